"""What both emulator processes build from their command lines, through the project's
registries: the edge model, the scheme halves (`stac.schemes`) and the accuracy evaluator.

Nothing here is algorithm code; a scheme name means the same objects as in `stac.sim`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stac import protocol
from stac.agents import DeviceAgent, EdgeAgent
from stac.frames import Frame, open_source
from stac.groundtruth import GroundTruth
from stac.protocol import Config
from stac.schemes import DEFAULT_MODEL, SchemeConfig, build_scheme
from stac.sim.runner import RunOptions, _jsonable, resolve_model, seed_everything
from stac.traces import Trace, load_trace


def scheme_config_to_json(config: SchemeConfig) -> dict[str, Any]:
    """A SchemeConfig as the HELLO message carries it (JSON: NaN as None, int keys as str)."""
    return {"source_fps": config.source_fps, "frame_size": list(config.frame_size),
            "fps": config.fps, "qp": config.qp, "quality": config.quality,
            "B": None if math.isnan(config.B) else config.B,
            "schedule": {str(k): v for k, v in config.schedule.items()}}


def scheme_config_from_json(data: dict[str, Any]) -> SchemeConfig:
    """The inverse of `scheme_config_to_json`; ValueError/TypeError on a malformed config."""
    try:
        w, h = (int(v) for v in data["frame_size"])
        return SchemeConfig(
            source_fps=float(data["source_fps"]), frame_size=(w, h),
            fps=float(data.get("fps", 10.0)), qp=int(data.get("qp", 30)),
            quality=int(data.get("quality", 50)),
            B=math.nan if data.get("B") is None else float(data["B"]),
            schedule={int(k): float(v) for k, v in dict(data.get("schedule", {})).items()})
    except KeyError as exc:
        raise ValueError(f"scheme config misses {exc}") from None


def edge_factory(model_spec: str | None, seed: int = 0
                 ) -> tuple[Callable[[protocol.Hello], EdgeAgent], str]:
    """(Hello -> that device's EdgeAgent, model name); the model is loaded once and shared.

    `seed` makes an `untrained:NAME` model the same network the devices score against."""
    name = model_spec or DEFAULT_MODEL
    seed_everything(seed)
    model = resolve_model(name)

    def factory(hello: protocol.Hello) -> EdgeAgent:
        config = scheme_config_from_json(hello.config)
        return build_scheme(hello.scheme, config, model).edge

    return factory, name


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
    config = SchemeConfig(source_fps=source.fps, frame_size=(w, h), fps=options.fps,
                          qp=options.qp, quality=options.quality, B=options.B,
                          schedule=dict(options.schedule))
    scheme = build_scheme(options.scheme, config, model)
    frames = []
    for frame in source:
        if options.duration is not None and frame.t >= options.duration - 1e-9:
            break
        frames.append(frame)
    gt = GroundTruth(model, source, options.model, use_cache=options.use_cache)
    for frame in frames:  # fill the cache now: scoring during the stream only reads it
        gt.labels(frame)
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
