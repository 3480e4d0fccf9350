"""What both emulator processes build from their command lines, through the project's
registries: the edge model, the scheme halves (`stac.schemes`) and the accuracy evaluator.

Nothing here is algorithm code; a scheme name means the same objects as in `stac.sim`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.models.registry import resolve_model
from stac import protocol
from stac.agents import DeviceAgent, EdgeAgent
from stac.bandwidth import BandwidthEstimator, make_estimator
from stac.frames import Frame, check_timing, open_source
from stac.groundtruth import GroundTruth
from stac.protocol import Config
from stac.schemes import DEFAULT_MODEL, Scheme, SchemeError, SchemeParams, Stream, make_scheme
from stac.sim.runner import RunOptions, open_trace, seed_everything, stream_of
from stac.traces import Trace


def hello_config(scheme: SchemeParams, stream: Stream) -> dict[str, Any]:
    """What the HELLO message carries: the scheme's parameters and the stream (JSON)."""
    return {"params": scheme.get_params(),
            "stream": {"source_fps": stream.source_fps, "frame_size": list(stream.frame_size),
                       "schedule": {str(k): v for k, v in stream.schedule.items()},
                       "tuner": stream.tuner}}


def scheme_from_hello(name: str, config: dict[str, Any]) -> tuple[SchemeParams, Stream]:
    """The inverse of `hello_config` for scheme `name`; SchemeError (a ValueError) on
    anything malformed."""
    if not isinstance(config, dict) or set(config) != {"params", "stream"}:
        raise SchemeError("HELLO config must hold exactly 'params' and 'stream'")
    params, stream = config["params"], config["stream"]
    if not isinstance(params, dict) or not isinstance(stream, dict):
        raise SchemeError("HELLO config's 'params' and 'stream' must be objects")
    if set(stream) != {"source_fps", "frame_size", "schedule", "tuner"}:
        raise SchemeError("HELLO stream must hold source_fps, frame_size, schedule and tuner")
    try:
        w, h = (int(v) for v in stream["frame_size"])
        schedule = {int(k): float(v) for k, v in dict(stream["schedule"]).items()}
        source_fps = float(stream["source_fps"])
        tuner = str(stream["tuner"])
    except (TypeError, ValueError) as e:
        raise SchemeError(f"bad HELLO stream: {e}") from None
    check_stream(source_fps, (w, h), schedule)
    return make_scheme(name, params), Stream(source_fps=source_fps, frame_size=(w, h),
                                             schedule=schedule, tuner=tuner)


MAX_FRAME_SIDE = 8192  # pixels; the codec's own limit is stac.codec.bitstream.MAX_DIM


def check_stream(source_fps: float, frame_size: tuple[int, int],
                 schedule: Mapping[int, float]) -> None:
    """Refuse stream values a peer may send that make no sense (SchemeError naming the
    field): zero, negative or non-finite rates, frame sizes outside 1..MAX_FRAME_SIDE.
    The scheme's own parameters are validated by its dataclass."""
    w, h = frame_size
    if not (1 <= w <= MAX_FRAME_SIDE and 1 <= h <= MAX_FRAME_SIDE):
        raise SchemeError(f"frame_size must be within 1..{MAX_FRAME_SIDE} per side, "
                          f"got {w}x{h}")
    rates = {"source_fps": source_fps, **{f"schedule[{k}]": v for k, v in schedule.items()}}
    for name, value in rates.items():
        if not (math.isfinite(value) and 0 < value <= protocol.MAX_FPS):
            raise SchemeError(f"{name} must be in (0, {protocol.MAX_FPS:g}], got {value!r}")
    if any(k < 0 for k in schedule):
        raise SchemeError(f"schedule seconds must be >= 0, got {sorted(schedule)}")
def edge_table_files(extra: Iterable[str | Path] = ()) -> dict[str, str]:
    """The table sets an edge offers, by name: the shipped ones (edge/tables/NAME.npz) and
    the files given to `stac-edge serve --tables` (under their stem and as given)."""
    from edge.tables import TABLE_DIR

    known = {p.stem: str(p) for p in sorted(Path(TABLE_DIR).glob("*.npz"))}
    for path in extra:
        known[Path(path).stem] = known[str(path)] = str(path)
    return known


def choose_tables(scheme: SchemeParams, known: Mapping[str, str]) -> SchemeParams:
    """`scheme` with its `tables` name replaced by the edge's own file for that name: a
    device names a table set, it never chooses a path on the edge (and learns nothing
    about the edge's files from the answer)."""
    name = getattr(scheme, "tables", None)
    if name is None:
        return scheme
    if name not in known:
        raise SchemeError(f"tables {protocol.escape(name, 80)!r} is not a table set "
                          f"of this edge; it offers {', '.join(sorted(known)) or 'none'}")
    return replace(scheme, tables=known[name])


def set_threads(threads: int | None) -> None:
    """Torch intra-op threads of this process (None: leave torch's default).

    The emulator runs an edge and N devices as processes on the same cores; with torch's
    default (all cores each) they oversubscribe the machine and every op waits for its
    slowest thread, so `stac-sim emulate` gives each process one thread."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def choose_tuner(stream: Stream, offered: Iterable[str | Path]) -> Stream:
    """`stream` whose tuner spec names a file (``offline:PROFILES.csv``, ``nn:WEIGHTS.pt``)
    only if the edge offers that file (`stac-edge serve --tuner-file`), by its path or name:
    a device never makes the edge open a path of its choosing."""
    kind, _, arg = stream.tuner.partition(":")
    if not arg:
        return stream
    known: dict[str, str] = {}
    for path in offered:
        known[Path(path).name] = known[str(path)] = str(path)
    if arg not in known:
        raise SchemeError(f"tuner file {protocol.escape(arg, 80)!r} is not offered by this "
                          f"edge; it offers {', '.join(sorted(known)) or 'none'}")
    return replace(stream, tuner=f"{kind}:{known[arg]}")


def edge_factory(model_spec: str | None, seed: int = 0, tables: Iterable[str | Path] = (),
                 tuner_files: Iterable[str | Path] = ()
                 ) -> tuple[Callable[[protocol.Hello], EdgeAgent], str]:
    """(Hello -> that device's EdgeAgent, model name); the model is loaded once and shared.

    `seed` makes an `untrained:NAME` model the same network the devices score against;
    `tables`: table files devices may name besides the shipped ones (`edge_table_files`);
    `tuner_files`: the profile / weight files a device's tuner spec may name."""
    name = model_spec or DEFAULT_MODEL
    seed_everything(seed)
    model = resolve_model(name)
    warmed: set[tuple[str, tuple[int, int]]] = set()
    known_tables = edge_table_files(tables)
    tuner_files = list(tuner_files)

    def factory(hello: protocol.Hello) -> EdgeAgent:
        scheme, stream = scheme_from_hello(hello.scheme, hello.config)
        scheme = choose_tables(scheme, known_tables)
        stream = choose_tuner(stream, tuner_files)
        key = (hello.scheme, stream.frame_size)
        if key not in warmed:
            w, h = stream.frame_size
            noise = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
            warm_up(scheme.build(stream, model), [noise, noise])
            warmed.add(key)
        return scheme.build(stream, model).edge

    return factory, name


def warm_up(scheme: Scheme, frames: list[np.ndarray]) -> None:
    """Run a throwaway instance of a scheme through a few frames, device to edge and back,
    so that one-time costs (numba compilation, codec and model initialisation) are paid
    before the wall clock starts rather than by the first frames of a stream."""
    for i, rgb in enumerate(frames):
        out = scheme.device.on_frame(i, i / 25.0, rgb)
        if out.keyframe is not None:
            scheme.device.on_feedback(scheme.edge.on_keyframe(out.keyframe).feedback)


@dataclass
class StreamSetup:
    """What a device stream needs, built before its camera clock starts."""

    agent: DeviceAgent
    start: Config
    hello: dict[str, Any]  # the HELLO config: the scheme's parameters and the stream
    trace: Trace
    frames: list[Frame]
    evaluate: Callable[[Frame, np.ndarray | None], tuple[float, float]]
    meta: dict[str, Any]
    estimator: BandwidthEstimator | None = None  # None: the oracle


def build_stream(options: RunOptions) -> StreamSetup:
    """The device half of `options` (the same objects `stac.sim.runner.run` builds), the
    frames decoded in advance and their ground truth cached, so neither costs stream time."""
    seed_everything(options.seed)
    trace = open_trace(options)
    estimator = make_estimator(options.estimator, trace)
    source = open_source(options.video, size=options.size, fps=options.source_fps)
    options = replace(options, duration=check_timing(source, options.scheme.fps, options.duration))
    model = resolve_model(options.model)
    w, h = source.size
    stream = stream_of(options, source)
    scheme = options.scheme.build(stream, model)
    frames = []
    for frame in source:
        if options.duration is not None and frame.t >= options.duration - 1e-9:
            break
        frames.append(frame)
    gt = GroundTruth(model, source, options.model, use_cache=options.use_cache)
    for frame in frames:  # fill the cache now: scoring during the stream only reads it
        gt.labels(frame)
    warm_up(options.scheme.build(stream, model), [f.rgb for f in frames[:2]])
    meta = {
        "scheme": options.scheme.name, "params": options.scheme.get_params(),
        "video": str(options.video),
        "video_name": getattr(source, "name", str(options.video)), "trace": str(options.trace),
        "model": options.model, "profile": "emulated (wall clock)", "seed": options.seed,
        "resolution": [w, h], "source_fps": source.fps,
        "video_s": _video_seconds(frames), "options": options.to_dict(),
        "gt_cache": {"dir": str(gt.dir), "hits": gt.hits, "misses": gt.misses},
    }
    return StreamSetup(agent=scheme.device, start=scheme.config,
                       hello=hello_config(options.scheme, stream), trace=trace, frames=frames,
                       evaluate=gt.score, meta=meta, estimator=estimator)


def _video_seconds(frames: list[Frame]) -> float:
    """Length of the captured video: last capture time plus one frame interval."""
    if not frames:
        return 0.0
    if len(frames) == 1:
        return 1.0
    return frames[-1].t + (frames[1].t - frames[0].t)
