"""One simulated run from options to outputs: what `stac-sim run` and the benchmarks call.

Loads the trace, the frame source and the model, builds the scheme, runs the SimPy
harness with a `RunWriter`, then writes summary.json and timeline.png.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from edge.models.base import StreamingSegmenter
from edge.models.registry import resolve_model
from edge.tuner import DEFAULT_TUNER
from stac.bandwidth import DEFAULT_ESTIMATOR, make_estimator
from stac.frames import check_timing, open_source
from stac.groundtruth import GroundTruth
from stac.latency import DEFAULT_PROFILE, get_profile
from stac.results import RunFolder, RunWriter, plot_timeline, write_summary
from stac.schemes import (
    DEFAULT_MODEL,
    DEFAULT_SCHEME,
    Scheme,
    SchemeParams,
    Stream,
    make_scheme,
)
from stac.sim.harness import LinkConfig, Simulation
from stac.traces import Trace, load_trace, window


@dataclass(frozen=True)
class RunOptions:
    """Everything that defines one run; same options and seed -> same CSVs.

    `scheme` is a scheme with its parameters (`stac.schemes.make_scheme("stac", {"B": 4})`);
    everything else describes the stream, the network and the run."""

    trace: str
    out: str
    video: str = "default"
    scheme: SchemeParams = field(default_factory=lambda: make_scheme(DEFAULT_SCHEME))
    model: str = DEFAULT_MODEL  # shipped name, checkpoint path, or "untrained:NAME"
    duration: float | None = None  # seconds of video; None: the whole source
    source_fps: float | None = None  # subsample the source; None: its own rate
    size: tuple[int, int] | None = None  # (w, h) resize; None: the source's size
    profile: str = DEFAULT_PROFILE
    seed: int = 0
    delay_ms: float = 20.0
    downlink_delay_ms: float | None = None
    downlink_kbps: float | None = None
    schedule: Mapping[int, float] = field(default_factory=dict)
    use_cache: bool = True
    overwrite: bool = False  # replace an existing non-empty `out` (else an error)
    tuner: str = DEFAULT_TUNER  # the edge's per-second B/fps policy (edge.tuner), §VI
    estimator: str = DEFAULT_ESTIMATOR  # bandwidth estimator (stac.bandwidth)
    trace_scale: float = 1.0  # multiply the trace's bandwidth (docs/traces.md: pixel ratio)
    trace_start: float = 0.0  # seconds into the trace the run starts at (< its length)

    def to_dict(self) -> dict[str, Any]:
        """The options as one flat mapping (the scheme's name and parameters inline), the
        inverse of `run_options`; JSON-ready."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "scheme"}
        out = {"scheme": self.scheme.name, **self.scheme.get_params(), **out}
        return _jsonable(out)


def run_options(params: Mapping[str, Any]) -> RunOptions:
    """`RunOptions` from a flat mapping of `stac-sim run` option names (``-`` as ``_``) and
    the scheme's parameters, as sweep specs and notebooks write them. A key that is neither
    a run option nor a parameter of the scheme is a `SchemeError` naming its parameters."""
    run_keys = {f.name for f in fields(RunOptions)} - {"scheme"}
    kwargs = {k: v for k, v in params.items() if k in run_keys}
    scheme = params.get("scheme", DEFAULT_SCHEME)
    if not isinstance(scheme, SchemeParams):
        scheme = make_scheme(scheme, {k: v for k, v in params.items()
                                      if k not in run_keys and k != "scheme"})
    if kwargs.get("size") is not None:
        kwargs["size"] = tuple(kwargs["size"])
    if kwargs.get("schedule") is not None:
        kwargs["schedule"] = {int(k): float(v) for k, v in dict(kwargs["schedule"]).items()}
    return RunOptions(scheme=scheme, **kwargs)


def open_trace(options: RunOptions) -> Trace:
    """The run's trace: `options.trace` from `options.trace_start` on, its bandwidth times
    `options.trace_scale` (`stac.traces.window`; TraceError naming the file otherwise)."""
    return window(load_trace(options.trace), float(options.trace_start),
                  float(options.trace_scale))


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (untrained model initialisation)."""
    random.seed(seed)
    torch.manual_seed(seed)


def stream_of(options: RunOptions, source: Any) -> Stream:
    """The stream a scheme is built for: `options` on an opened frame `source`."""
    return Stream(source_fps=source.fps, frame_size=tuple(source.size),
                  schedule=dict(options.schedule), tuner=options.tuner)


def run(options: RunOptions, progress: bool = False,
        model: StreamingSegmenter | None = None,
        prepare: Callable[[Scheme], None] | None = None) -> dict[str, Any]:
    """Simulate `options`; write frames.csv, seconds.csv, summary.json, timeline.png in `out`.

    `model` overrides `options.model` (an already built network, e.g. shared across runs).
    `prepare` sees the built scheme before the simulation starts (experiments use it to
    observe an agent, e.g. record the edge's feedback). Returns the summary. The outputs
    appear in `out` only when the run succeeds (`stac.results.RunFolder`).
    """
    with RunFolder(options.out, overwrite=options.overwrite) as out:
        return _run(options, out, progress, model, prepare)


def _run(options: RunOptions, out: Path, progress: bool, model: StreamingSegmenter | None,
         prepare: Callable[[Scheme], None] | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    seed_everything(options.seed)
    trace = open_trace(options)
    estimator = make_estimator(options.estimator, trace)
    profile = get_profile(options.profile)
    source = open_source(options.video, size=options.size, fps=options.source_fps)
    options = replace(options, duration=check_timing(source, options.scheme.fps, options.duration))
    if model is None:
        model = resolve_model(options.model)
    w, h = source.size
    scheme = options.scheme.build(stream_of(options, source), model)
    if prepare is not None:
        prepare(scheme)
    gt = GroundTruth(model, source, options.model, use_cache=options.use_cache)
    link = LinkConfig(
        delay_s=options.delay_ms / 1000.0,
        downlink_delay_s=None if options.downlink_delay_ms is None
        else options.downlink_delay_ms / 1000.0,
        downlink_kbps=options.downlink_kbps)
    writer = RunWriter(out, scheme.config.as_dict())
    bar = _progress_bar(source, options.duration) if progress else None
    sim = Simulation(scheme, trace, profile, gt.score, writer, link,
                     progress=bar.update if bar is not None else None,
                     estimator=estimator)
    try:
        result = sim.run(source, duration=options.duration)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    meta = {
        "scheme": options.scheme.name, "params": options.scheme.get_params(),
        "video": str(options.video),
        "video_name": getattr(source, "name", str(options.video)), "trace": str(options.trace),
        "model": options.model, "profile": options.profile, "seed": options.seed,
        "tuner": getattr(getattr(scheme.edge, "tuner", None), "spec", options.tuner),
        "resolution": [w, h], "source_fps": source.fps, "video_s": result.video_s,
        "sim_time_s": result.sim_time_s, "options": options.to_dict(),
        "gt_cache": {"dir": str(gt.dir), "hits": gt.hits, "misses": gt.misses},
    }
    plot_timeline(out, title=f"{options.scheme.name} on {meta['video_name']} / {trace.name}")
    meta["wall_s"] = time.perf_counter() - t0
    return write_summary(out, meta)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and math.isnan(v):
            v = None
        elif isinstance(v, Mapping):
            v = {str(a): b for a, b in v.items()}
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def _progress_bar(source: Any, duration: float | None):
    from tqdm import tqdm

    try:
        total: int | None = len(source)
    except TypeError:
        total = None
    if duration is not None:
        cap = math.ceil(duration * source.fps - 1e-9)
        total = cap if total is None else min(total, cap)
    return tqdm(total=total, unit="frame", desc="simulating", dynamic_ncols=True)


def format_summary(summary: dict[str, Any]) -> str:
    """A few readable lines for the end of `stac-sim run`."""
    fs, ss = summary["frame_stats"], summary["second_stats"]

    def f(x: float | None, spec: str = ".3f") -> str:
        return "n/a" if x is None else format(x, spec)

    return "\n".join([
        f"scheme {summary['scheme']}  model {summary['model']}  profile {summary['profile']}  "
        f"seed {summary['seed']}  tuner {summary.get('tuner', 'n/a')}",
        f"frames {summary['frames']}  keyframes {summary['keyframes']}  delivered "
        f"{summary['delivered']}  dropped {summary['dropped']}  "
        f"without result {summary['frames_without_result']}",
        f"bitrate {f(ss['bitrate_kbps']['mean'], '.0f')} kbps  vs bandwidth "
        f"{f(ss['bandwidth_kbps']['mean'], '.0f')} kbps (means per second)",
        f"overshoot (bitrate > {summary['overshoot_seconds']['factor']:g} x bandwidth) in "
        f"{summary['overshoot_seconds']['count']} s, mean {f(ss['overshoot_kbps']['mean'], '.0f')}"
        f" kbps  utilisation mean {f(ss['utilisation']['mean'], '.2f')}",
        f"PA {f(fs['pa']['mean'])}  mIoU {f(fs['miou']['mean'])}  delay mean "
        f"{f(fs['delay_s']['mean'])} s  p95 {f(fs['delay_s']['p95'])} s  result age mean "
        f"{f(fs['result_age_s']['mean'])} s ({f(fs['result_age_frames']['mean'], '.1f')} frames)"
        f"  p95 {f(fs['result_age_s']['p95'])} s "
        f"({f(fs['result_age_frames']['p95'], '.1f')} frames)",
        f"wall {summary['wall_s']:.1f} s for {summary['video_s']:.1f} s of video",
    ])
