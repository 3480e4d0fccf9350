"""`stac-sim run`: simulate one scheme on a video over a bandwidth trace (stac.sim)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stac.latency import DEFAULT_PROFILE, PROFILES
from stac.options import add_stream_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="simulate a scheme on a video over a bandwidth trace",
        description="Simulate one scheme in SimPy time and write frames.csv, seconds.csv, "
                    "summary.json and timeline.png into --out.")
    add_stream_arguments(p)
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                   help="latency profile (default %(default)s)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from edge.models.registry import ModelError
    from stac.codec.errors import BitstreamError
    from stac.frames import FrameError
    from stac.options import run_options
    from stac.results import failed_note
    from stac.sim.runner import format_summary, run
    from stac.traces import TraceError

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    options = run_options(args, args.scheme_params, profile=args.profile,
                          overwrite=args.overwrite)
    try:
        summary = run(options, progress=True)
    except ModelError as exc:
        print(f"stac-sim run: {exc}", file=sys.stderr)
        return 2
    except (TraceError, FrameError, BitstreamError, ValueError, OSError) as exc:
        print(f"stac-sim run: {exc}{failed_note(exc)}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"outputs in {args.out}/ (frames.csv, seconds.csv, summary.json, timeline.png)")
    return 0
