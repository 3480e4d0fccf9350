"""What both emulator processes build from their command lines, through the project's
registries: the edge model, the scheme halves (`stac.schemes`) and the accuracy evaluator.

Nothing here is algorithm code; a scheme name means the same objects as in `stac.sim`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from stac import protocol
from stac.agents import DeviceAgent, EdgeAgent
from stac.frames import Frame, open_source
from stac.groundtruth import GroundTruth
from stac.protocol import Config
from stac.schemes import DEFAULT_MODEL, Scheme, SchemeConfig, build_scheme
from stac.sim.runner import (
    RunOptions,
    _jsonable,
    resolve_model,
    scheme_config,
    seed_everything,
)
from stac.traces import Trace, load_trace


def scheme_config_to_json(config: SchemeConfig) -> dict[str, Any]:
    """A SchemeConfig as the HELLO message carries it (JSON: NaN as None, int keys as str)."""
    return _jsonable(asdict(config))


def scheme_config_from_json(data: dict[str, Any]) -> SchemeConfig:
    """The inverse of `scheme_config_to_json`; ValueError/TypeError on a malformed config."""
    known = {f.name for f in fields(SchemeConfig)}
    if unknown := sorted(set(data) - known):
        raise ValueError(f"unknown scheme config fields {unknown}")
    kwargs = dict(data)
    try:
        w, h = (int(v) for v in kwargs["frame_size"])
        kwargs["frame_size"] = (w, h)
        kwargs["source_fps"] = float(kwargs["source_fps"])
    except KeyError as exc:
        raise ValueError(f"scheme config misses {exc}") from None
    if "B" in kwargs:
        kwargs["B"] = math.nan if kwargs["B"] is None else float(kwargs["B"])
    if "schedule" in kwargs:
        kwargs["schedule"] = {int(k): float(v) for k, v in dict(kwargs["schedule"]).items()}
    return check_scheme_config(SchemeConfig(**kwargs))


MAX_FRAME_SIDE = 8192  # pixels; the codec's own limit is stac.codec.bitstream.MAX_DIM


def check_scheme_config(config: SchemeConfig) -> SchemeConfig:
    """Refuse values a peer may send that make no sense (ValueError naming the field):
    zero, negative or non-finite rates, frame sizes outside 1..MAX_FRAME_SIDE."""
    w, h = config.frame_size
    if not (1 <= w <= MAX_FRAME_SIDE and 1 <= h <= MAX_FRAME_SIDE):
        raise ValueError(f"frame_size must be within 1..{MAX_FRAME_SIDE} per side, "
                         f"got {w}x{h}")
    rates = {"source_fps": config.source_fps, "fps": config.fps,
             **{f"schedule[{k}]": v for k, v in config.schedule.items()}}
    for name, value in rates.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value)
                and 0 < value <= protocol.MAX_FPS):
            raise ValueError(f"{name} must be in (0, {protocol.MAX_FPS:g}], got {value!r}")
    if not (math.isnan(config.B) or (math.isfinite(config.B) and config.B > 0)):
        raise ValueError(f"B must be a finite number > 0 (or unset), got {config.B!r}")
    if any(k < 0 for k in config.schedule):
        raise ValueError(f"schedule seconds must be >= 0, got {sorted(config.schedule)}")
    return config


def edge_table_files(extra: Iterable[str | Path] = ()) -> dict[str, str]:
    """The table sets an edge offers, by name: the shipped ones (edge/tables/NAME.npz) and
    the files given to `stac-edge serve --tables` (under their stem and as given)."""
    from edge.tables import TABLE_DIR

    known = {p.stem: str(p) for p in sorted(Path(TABLE_DIR).glob("*.npz"))}
    for path in extra:
        known[Path(path).stem] = known[str(path)] = str(path)
    return known


def choose_tables(config: SchemeConfig, known: Mapping[str, str]) -> SchemeConfig:
    """`config` with its `tables` name replaced by the edge's own file for that name: a
    device names a table set, it never chooses a path on the edge (and learns nothing
    about the edge's files from the answer)."""
    if config.tables is None:
        return config
    if config.tables not in known:
        raise ValueError(f"tables {protocol.escape(config.tables, 80)!r} is not a table set "
                         f"of this edge; it offers {', '.join(sorted(known)) or 'none'}")
    return replace(config, tables=known[config.tables])


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


def edge_factory(model_spec: str | None, seed: int = 0, tables: Iterable[str | Path] = ()
                 ) -> tuple[Callable[[protocol.Hello], EdgeAgent], str]:
    """(Hello -> that device's EdgeAgent, model name); the model is loaded once and shared.

    `seed` makes an `untrained:NAME` model the same network the devices score against;
    `tables`: table files devices may name besides the shipped ones (`edge_table_files`)."""
    name = model_spec or DEFAULT_MODEL
    seed_everything(seed)
    model = resolve_model(name)
    warmed: set[tuple[str, tuple[int, int]]] = set()
    known_tables = edge_table_files(tables)

    def factory(hello: protocol.Hello) -> EdgeAgent:
        config = choose_tables(scheme_config_from_json(hello.config), known_tables)
        key = (hello.scheme, config.frame_size)
        if key not in warmed:
            w, h = config.frame_size
            noise = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
            warm_up(build_scheme(hello.scheme, config, model), [noise, noise])
            warmed.add(key)
        return build_scheme(hello.scheme, config, model).edge

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
    scheme_config: dict[str, Any]
    trace: Trace
    frames: list[Frame]
    evaluate: Callable[[Frame, np.ndarray | None], tuple[float, float]]
    meta: dict[str, Any]


def build_stream(options: RunOptions) -> StreamSetup:
    """The device half of `options` (the same objects `stac.sim.runner.run` builds), the
    frames decoded in advance and their ground truth cached, so neither costs stream time."""
    seed_everything(options.seed)
    trace = load_trace(options.trace)
    source = open_source(options.video, size=options.size, fps=options.source_fps)
    model = resolve_model(options.model)
    w, h = source.size
    config = scheme_config(options, source)
    scheme = build_scheme(options.scheme, config, model)
    frames = []
    for frame in source:
        if options.duration is not None and frame.t >= options.duration - 1e-9:
            break
        frames.append(frame)
    gt = GroundTruth(model, source, options.model, use_cache=options.use_cache)
    for frame in frames:  # fill the cache now: scoring during the stream only reads it
        gt.labels(frame)
    warm_up(build_scheme(options.scheme, config, model), [f.rgb for f in frames[:2]])
    meta = {
        "scheme": options.scheme, "video": str(options.video),
        "video_name": getattr(source, "name", str(options.video)), "trace": str(options.trace),
        "model": options.model, "profile": "emulated (wall clock)", "seed": options.seed,
        "resolution": [w, h], "source_fps": source.fps,
        "video_s": _video_seconds(frames), "options": _jsonable(asdict(options)),
        "gt_cache": {"dir": str(gt.dir), "hits": gt.hits, "misses": gt.misses},
    }
    return StreamSetup(agent=scheme.device, start=scheme.config,
                       scheme_config=scheme_config_to_json(config), trace=trace, frames=frames,
                       evaluate=gt.score, meta=meta)


def _video_seconds(frames: list[Frame]) -> float:
    """Length of the captured video: last capture time plus one frame interval."""
    if not frames:
        return 0.0
    if len(frames) == 1:
        return 1.0
    return frames[-1].t + (frames[1].t - frames[0].t)
