"""Command-line options shared by `stac-sim run`, `stac-sim emulate` and `stac-device stream`.

The stream's and the network's options are declared once here; a scheme's options are
derived from its dataclass (`stac.schemes`): `--NAME VALUE` for each parameter, parsed
after `--scheme` is known, so an option the chosen scheme does not have is an error that
names the options it does have.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stac.modelspec import MODEL_SPEC_HELP
from stac.schemes import (
    DEFAULT_MODEL,
    DEFAULT_SCHEME,
    SchemeError,
    SchemeParams,
    get_scheme,
    list_schemes,
    make_scheme,
)


def parse_size(text: str) -> tuple[int, int]:
    """"640x272" -> (640, 272): a frame size as width x height."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x272, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def positive_float(text: str) -> float:
    """"0.05" -> 0.05: a finite number > 0 (`--trace-scale`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def seconds_from_start(text: str) -> float:
    """"30" -> 30.0: a finite number of seconds >= 0 (`--trace-start`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, "
                                         f"got {text!r}")
    return value


def parse_schedule(text: str) -> dict[int, float]:
    """"3:5,6:10" -> {3: 5.0, 6: 10.0}: fixed fps changes, second:fps."""
    out = {}
    try:
        for item in text.split(","):
            second, fps = item.split(":")
            out[int(second)] = float(fps)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"schedule must look like 3:5,6:10 (second:fps,...), got {text!r}") from None
    return out


def add_stream_arguments(p: argparse.ArgumentParser) -> None:
    """The stream's, the network's and the run's options (everything but the scheme's)."""
    p.add_argument("--trace", required=True, type=Path, help="bandwidth trace CSV")
    p.add_argument("--trace-scale", type=positive_float, default=1.0, metavar="FACTOR",
                   help="multiply the trace's bandwidth by FACTOR, e.g. the pixel ratio of "
                        "the stream to the paper's 2048x1040 (docs/traces.md) (default "
                        "%(default)s)")
    p.add_argument("--trace-start", type=seconds_from_start, default=0.0, metavar="SECONDS",
                   help="start SECONDS into the trace (it wraps to its beginning at its end; "
                        "a start past its end is an error) (default %(default)s)")
    p.add_argument("--video", default="default",
                   help="video file, image folder, CamVid folder, or 'default' (bikes.mp4)")
    p.add_argument("--scheme", default=DEFAULT_SCHEME,
                   help=f"streaming scheme: {', '.join(list_schemes())} (default "
                        "%(default)s); its parameters are listed below")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"the edge model (default %(default)s): {MODEL_SPEC_HELP}; "
                        "see docs/models.md")
    p.add_argument("--duration", type=float, default=None, help="seconds of video to stream")
    p.add_argument("--source-fps", type=float, default=None,
                   help="camera rate: subsample the video first (default: the video's)")
    p.add_argument("--size", type=parse_size, default=None,
                   help="resize frames to WxH (default: the video's)")
    p.add_argument("--schedule", type=parse_schedule, default={},
                   help="fixed fps changes, e.g. 3:5,6:10 (each starts a new configuration)")
    p.add_argument("--tuner", default="auto",
                   help="the edge's per-second configuration policy (STAC §VI): auto (the "
                        "scheme's own: nn for stac, offline for uniform, grace and h264, fixed "
                        "for the others and under --schedule), fixed (no change but the "
                        "--schedule), offline[:PROFILES.csv], nn[:WEIGHTS.pt], nn-no-c, nn-no-d, "
                        "casva-content, nn-safe (beyond the paper: nn kept within the link); "
                        "without a file, the one shipped for the model in "
                        "edge/tuners/ (default %(default)s)")
    p.add_argument("--estimator", default="oracle",
                   help="bandwidth estimator the tuner is given: oracle (the next second's "
                        "real bandwidth, §VIII-C), harmonic[:K] (harmonic mean of the last K "
                        "keyframes' delivered rates) or robust[:K] (RobustMPC's: the harmonic "
                        "mean of the last K seconds, a late undelivered keyframe counted, over "
                        "1 + the largest recent relative error) (default %(default)s)")
    p.add_argument("--delay-ms", type=float, default=20.0,
                   help="uplink one-way delay (default %(default)s)")
    p.add_argument("--downlink-delay-ms", type=float, default=None,
                   help="feedback one-way delay (default: --delay-ms)")
    p.add_argument("--downlink-kbps", type=float, default=None,
                   help="feedback link rate (default: size adds no time)")
    p.add_argument("--seed", type=int, default=0, help="(default %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the GT cache")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; 1 is faster on a busy machine)")
    p.epilog = scheme_epilog()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(scheme_options=True)


def scheme_epilog() -> str:
    """Every registered scheme's options with their defaults and docs, for --help."""
    lines = ["scheme options (given after --scheme NAME; each scheme has only its own):"]
    for name in list_schemes():
        try:
            cls = get_scheme(name)
        except SchemeError as e:
            lines.append(f"  {name}: unavailable ({e})")
            continue
        lines.append(f"  {name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        for p in cls.parameters():
            knob = ", a run-time knob" if p.knob else ""
            lines.append(f"    --{p.name.replace('_', '-'):<10} {p.doc} "
                         f"(default {p.default}{knob})")
    return "\n".join(lines)


def parse_scheme(name: str, argv: Sequence[str]) -> SchemeParams:
    """Scheme `name` with the parameters given as `--NAME VALUE` in `argv`; anything else in
    `argv` is a SchemeError naming the scheme's options."""
    cls = get_scheme(name)
    parser = argparse.ArgumentParser(prog=f"--scheme {name}", add_help=False,
                                     allow_abbrev=False)
    for p in cls.parameters():
        parser.add_argument(f"--{p.name.replace('_', '-')}", dest=p.name, default=None)
    values, unknown = parser.parse_known_args(list(argv))
    if unknown:
        have = ", ".join(f"--{p.name.replace('_', '-')} (default {p.default})"
                         for p in cls.parameters())
        raise SchemeError(f"scheme {name!r} has no option {' '.join(unknown)}; "
                          f"its options: {have}")
    return make_scheme(name, {k: v for k, v in vars(values).items() if v is not None})


def scheme_argv(scheme: SchemeParams) -> list[str]:
    """`--scheme NAME --PARAM VALUE...` for every parameter that is not None (the inverse of
    `parse_scheme`; floats written with repr so they round-trip exactly)."""
    argv = ["--scheme", scheme.name]
    for name, value in scheme.get_params().items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", repr(value) if isinstance(value, float)
                     else str(value)]
    return argv


def run_options(args: argparse.Namespace, scheme: SchemeParams, **extra: Any):
    """The `RunOptions` of parsed stream arguments `args` and `scheme` (`extra`: the
    driver's own options, e.g. the latency profile)."""
    from stac.sim.runner import RunOptions

    return RunOptions(
        trace=str(args.trace), trace_scale=args.trace_scale, trace_start=args.trace_start,
        out=str(args.out), video=args.video, scheme=scheme,
        model=args.model, duration=args.duration, source_fps=args.source_fps, size=args.size,
        seed=args.seed, delay_ms=args.delay_ms, downlink_delay_ms=args.downlink_delay_ms,
        downlink_kbps=args.downlink_kbps, schedule=args.schedule,
        use_cache=not args.no_cache, tuner=args.tuner, estimator=args.estimator, **extra)


def stream_argv(options) -> list[str]:
    """The `stac-device stream` arguments of `RunOptions` (what `stac-sim emulate` spawns)."""
    argv = ["--trace", options.trace, "--video", str(options.video), "--model", options.model,
            "--delay-ms", repr(options.delay_ms), "--seed", str(options.seed)]
    optional = {"--trace-scale": None if options.trace_scale == 1 else options.trace_scale,
                "--trace-start": None if options.trace_start == 0 else options.trace_start,
                "--size": None if options.size is None else "x".join(map(str, options.size)),
                "--source-fps": options.source_fps, "--duration": options.duration,
                "--downlink-delay-ms": options.downlink_delay_ms,
                "--downlink-kbps": options.downlink_kbps}
    for flag, value in optional.items():
        if value is not None:
            argv += [flag, repr(value) if isinstance(value, float) else str(value)]
    if options.schedule:
        argv += ["--schedule",
                 ",".join(f"{k}:{v!r}" for k, v in sorted(options.schedule.items()))]
    if not options.use_cache:
        argv.append("--no-cache")
    argv += ["--tuner", options.tuner, "--estimator", options.estimator]
    return argv + scheme_argv(options.scheme)
