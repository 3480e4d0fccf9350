"""`stac-sim sweep`: run every configuration of a TOML spec, resumably, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a grid of simulations from a TOML spec (process pool or Ray)",
        description="Run every configuration of SPEC (a [base] table and [[grid]] tables of "
                    "`stac-sim run` options; lists are swept) into OUT/runs/<run_id>/, skipping "
                    "runs already done there, and write OUT/runs.csv and "
                    "OUT/accuracy_bitrate.png. See docs/experiments.md.")
    p.add_argument("spec", type=Path, help="sweep spec (TOML)")
    p.add_argument("--out", required=True, type=Path, help="results folder")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: a process pool (default); ray: one Ray task per run")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel runs (default: the CPU count; local, or a local Ray instance)")
    p.add_argument("--address", default=None,
                   help="address of an existing Ray cluster (ray backend; default: start one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from stac.experiment import SpecError, plot_accuracy_bitrate, sweep

    try:
        runs = sweep(args.spec, args.out, backend=args.backend, workers=args.workers,
                     address=args.address, progress=not args.no_progress)
    except SpecError as exc:
        print(f"stac-sim sweep: {exc}", file=sys.stderr)
        return 2
    ok = runs[runs["status"] == "ok"]
    failed = runs[runs["status"] != "ok"]
    print(f"{len(runs)} runs: {len(ok)} ok, {len(failed)} failed")
    if len(ok):
        shown = ["run_id", *[c for c in runs.columns[3:runs.columns.get_loc("kbps")]
                             if runs[c].nunique(dropna=False) > 1],
                 "kbps", "pa", "miou", "key_pa", "delay_mean", "dropped", "wall_s"]
        print(ok[list(dict.fromkeys(shown))].to_string(index=False, float_format="{:.4g}".format))
    for _, row in failed.iterrows():
        print(f"FAILED {row['run_id']}: {row['error']}")
    if len(failed) and (args.out / "failed").is_dir():
        print(f"tracebacks: {args.out / 'failed'}/<run_id>.log")
    print(f"table: {args.out / 'runs.csv'}")
    if len(ok):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plot_accuracy_bitrate(runs)
        fig.savefig(args.out / "accuracy_bitrate.png", dpi=110)
        plt.close(fig)
        print(f"plot:  {args.out / 'accuracy_bitrate.png'}")
    print(f"runs:  {args.out / 'runs'}/<run_id>/ (frames.csv, seconds.csv, summary.json, "
          "timeline.png)")
    return 1 if len(failed) else 0
