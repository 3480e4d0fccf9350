"""AccMPEG's offline accuracy-bitrate profiles (STAC §VIII-C): `accmpeg` over a grid of its
quality pair (qp, qp + 10) x fps on the two real clips, one profile row per second
(`edge.profiles.rows_from_run`, the quality knob `qp` in the `B` column), for the edge's
`offline:PROFILES.csv` tuner, which maps the bandwidth estimate to (qp, fps).

    nice -n 19 python experiments/accmpeg_profile.py OUT_DIR [--duration 4] [--width 480] \\
        [--workers 1]

A sweep on the experiment library (resumable: a rerun skips finished runs) over a constant
wide trace (every keyframe arrives: the profile measures compression, not drops). Writes
OUT_DIR/profiles.csv; the shipped profiles are edge/tuners/MODEL-accmpeg.csv (every run
with the fixed tuner: a profile measures fixed configurations).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from edge.profiles import ProfileRow, rows_from_run, write_profiles
from stac.experiment import run_dir, sweep
from stac.schemes import DEFAULT_MODEL
from stac.traces import Trace, save_trace

REPO = Path(__file__).resolve().parent.parent
QPS = [18, 26, 34, 40]
FPS = [2.5, 5.0, 10.0]


def clips(width: int) -> dict[str, tuple[str, str]]:
    """The two real clips at `width` pixels wide: name -> (video, WxH)."""
    data = Path(os.environ.get("STAC_DATA") or REPO.parent / "shared" / "data")
    return {"bikes": ("default", f"{width}x{round(272 * width / 640 / 2) * 2}"),
            "solidWhiteRight": (str(data / "videos" / "solidWhiteRight.mp4"),
                                f"{width}x{round(540 * width / 960 / 2) * 2}")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--width", type=int, default=480)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trace = save_trace(Trace(np.array([0.0]), np.array([2e5]), end_s=60.0),
                       args.out / "wide.csv", "constant 200 Mbps (profiles: no drops)")
    named = clips(args.width)
    grids = [{"video": video, "size": size, "scheme": "accmpeg", "qp": QPS, "fps": FPS}
             for video, size in named.values()]
    spec = {"base": {"trace": str(trace.resolve()), "model": args.model, "tuner": "fixed",
                     "duration": args.duration}, "grid": grids}
    runs = sweep(spec, args.out / "sweep", workers=args.workers)
    names = {video: name for name, (video, _) in named.items()}
    rows: list[ProfileRow] = []
    for r in runs[runs["status"] == "ok"].itertuples():
        for row in rows_from_run(run_dir(args.out / "sweep", r.run_id), knob="qp"):
            rows.append(ProfileRow(**{**row.__dict__, "video": names[r.video]}))
    path = write_profiles(rows, args.out / "profiles.csv")
    print(f"{len(runs)} runs ({int((runs['status'] != 'ok').sum())} failed), {len(rows)} "
          f"rows -> {path}")


if __name__ == "__main__":
    main()
