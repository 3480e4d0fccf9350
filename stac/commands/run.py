"""`stac-sim run`: simulate one scheme on a video over a bandwidth trace (stac.sim)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from stac.latency import DEFAULT_PROFILE, PROFILES
from stac.schemes import DEFAULT_MODEL, DEFAULT_SCHEME, list_schemes


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x272, got {text!r}") from None
    return w, h


def _schedule(text: str) -> dict[int, float]:
    out = {}
    try:
        for item in text.split(","):
            second, fps = item.split(":")
            out[int(second)] = float(fps)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"schedule must look like 3:5,6:10 (second:fps,...), got {text!r}") from None
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="simulate a scheme on a video over a bandwidth trace",
        description="Simulate one scheme in SimPy time and write frames.csv, seconds.csv, "
                    "summary.json and timeline.png into --out.")
    p.add_argument("--trace", required=True, type=Path, help="bandwidth trace CSV")
    p.add_argument("--video", default="default",
                   help="video file, image folder, CamVid folder, or 'default' (bikes.mp4)")
    p.add_argument("--scheme", default=DEFAULT_SCHEME, choices=list_schemes())
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="shipped model name or checkpoint path (default %(default)s); "
                        "'untrained:NAME' for mechanics-only runs")
    p.add_argument("--duration", type=float, default=None, help="seconds of video to simulate")
    p.add_argument("--fps", type=float, default=10.0, help="keyframe rate (default %(default)s)")
    p.add_argument("--source-fps", type=float, default=None, help="subsample the video first")
    p.add_argument("--size", type=_size, default=None, help="resize frames to WxH")
    p.add_argument("--qp", type=int, default=30, help="x264 uniform QP (h264)")
    p.add_argument("--quality", type=int, default=50, help="JPEG quality (jpeg)")
    p.add_argument("--B", type=float, default=math.nan,
                   help="loss-increment bound B of Algorithm 1 (stac; required there)")
    p.add_argument("--tables", default=None,
                   help="table file or model name (stac, uniform, grace; default: the model's "
                        "shipped tables, edge/tables/MODEL.npz)")
    p.add_argument("--level", type=int, default=None,
                   help="the one table level of every region (uniform, grace; 0 finest; default: "
                        "the middle level)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                   help="latency profile (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--delay-ms", type=float, default=20.0, help="uplink one-way delay")
    p.add_argument("--downlink-delay-ms", type=float, default=None,
                   help="feedback one-way delay (default: --delay-ms)")
    p.add_argument("--downlink-kbps", type=float, default=None,
                   help="feedback link rate (default: size adds no time)")
    p.add_argument("--schedule", type=_schedule, default={},
                   help="fixed fps changes, e.g. 3:5,6:10 (each starts a new configuration)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the GT cache")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; 1 is faster on a busy machine)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from edge.models.registry import ModelError
    from stac.codec.errors import BitstreamError
    from stac.frames import FrameError
    from stac.results import failed_note
    from stac.sim.runner import RunOptions, format_summary, run
    from stac.traces import TraceError

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    options = RunOptions(
        trace=str(args.trace), out=str(args.out), video=args.video, scheme=args.scheme,
        model=args.model, duration=args.duration, fps=args.fps, source_fps=args.source_fps,
        size=args.size, qp=args.qp, quality=args.quality, B=args.B, tables=args.tables,
        level=args.level, profile=args.profile,
        seed=args.seed, delay_ms=args.delay_ms, downlink_delay_ms=args.downlink_delay_ms,
        downlink_kbps=args.downlink_kbps, schedule=args.schedule, use_cache=not args.no_cache,
        overwrite=args.overwrite)
    try:
        summary = run(options, progress=True)
    except ModelError as exc:
        print(f"stac-sim run: {exc}\n  (train one with the training code, pass a checkpoint "
              "path with --model, or 'untrained:NAME' for a mechanics-only run)",
              file=sys.stderr)
        return 2
    except (TraceError, FrameError, BitstreamError, ValueError, OSError) as exc:
        print(f"stac-sim run: {exc}{failed_note(exc)}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"outputs in {args.out}/ (frames.csv, seconds.csv, summary.json, timeline.png)")
    return 0
