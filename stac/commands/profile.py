"""`stac-sim profile`: the offline profiles of STAC §VI (one row per video second under each
fixed configuration of a grid), resumably, on a process pool or Ray."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _floats(text: str) -> tuple[float, ...]:
    """"0.5,1,2" -> (0.5, 1.0, 2.0)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.5,1,2, got {text!r}") from None
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    from stac.options import parse_size

    p = subparsers.add_parser(
        "profile", help="per-second profiles of a scheme over a grid of its knob and fps "
                        "(STAC §VI offline stage)",
        description="Stream each VIDEO under every (knob, fps) of the grid over a constant "
                    "wide link (OUT/link.csv), one resumable run each (OUT/sweep/runs/<id>/: "
                    "rerunning skips finished runs), and write OUT/profiles.csv (one row per "
                    "video second: knob as column B, fps, pa, miou, bitrate_kbps of real "
                    "bytes, c, d, video, model, seed, scheme; dominated rows dropped as in "
                    "§VI) and OUT/profiles_all.csv (every row). See docs/simulation.md.")
    p.add_argument("--out", required=True, type=Path, help="campaign folder (resumable)")
    p.add_argument("--scheme", default="stac",
                   help="stac or stac-plus (knob B), uniform or grace (level), h264 (qp), "
                        "jpeg (quality) (default %(default)s)")
    p.add_argument("--values", required=True, type=_floats,
                   help="the quality knob's grid, e.g. 0.25,0.5,1,2,4,8,16 (B of stac)")
    p.add_argument("--fps", type=_floats, default=(2.0, 5.0, 10.0),
                   help="keyframe rates (default 2,5,10)")
    p.add_argument("--video", action="append", default=None,
                   help="a video (repeat for several; default: the default clip)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--width", type=int, default=None,
                      help="resize every video to this width, aspect ratio kept (height even)")
    size.add_argument("--size", type=parse_size, default=None,
                      help="resize every video to WxH (default: the videos' own size)")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds of each video (the clip's length if shorter)")
    p.add_argument("--source-fps", type=float, default=None,
                   help="subsample the videos first (default: their own rate)")
    p.add_argument("--model", default=None, help="the edge model (default: the default model)")
    p.add_argument("--seed", type=int, default=0, help="(default %(default)s)")
    p.add_argument("--kbps", type=float, default=200_000.0,
                   help="the constant link (default %(default)s: nothing queues)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel runs (default: the CPU count)")
    p.add_argument("--ray", action="store_true", help="run on Ray instead of a process pool")
    p.add_argument("--address", default=None, help="an existing Ray cluster (with --ray)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    from edge.profiles import ProfileError
    from stac.experiment import SpecError
    from stac.experiment.profiling import (
        ALL_ROWS,
        PROFILES,
        CampaignError,
        ProfileCampaign,
        profile,
        summary_table,
    )

    try:
        campaign = ProfileCampaign(
            scheme=args.scheme, values=args.values, fps=args.fps,
            videos=tuple(args.video or ("default",)), width=args.width, size=args.size,
            duration=args.duration, model=args.model, seed=args.seed, kbps=args.kbps,
            source_fps=args.source_fps)
        kept, runs = profile(campaign, args.out, backend="ray" if args.ray else "local",
                             workers=args.workers, address=args.address,
                             progress=not args.no_progress)
    except (CampaignError, SpecError, ProfileError, ValueError) as e:
        print(f"stac-sim profile: {e}", file=sys.stderr)
        return 2
    failed = runs[runs["status"] != "ok"]
    print(f"{len(runs)} runs of {campaign.scheme} ({campaign.knob} x fps): "
          f"{len(runs) - len(failed)} ok, {len(failed)} failed")
    for row in failed.itertuples():
        print(f"FAILED {row.run_id}: {row.error}")
    if kept:
        from edge.profiles import read_profiles

        rows = read_profiles(args.out / ALL_ROWS)
        table = summary_table(rows, kept).rename(columns={"B": campaign.knob})
        print(table.to_string(index=False, float_format="{:.4g}".format))
        print(f"{len(rows)} rows, {len(kept)} kept after dropping dominated rows (§VI)")
        print(f"profiles: {args.out / PROFILES}  (all rows: {args.out / ALL_ROWS})")
    return 1 if len(failed) else 0
