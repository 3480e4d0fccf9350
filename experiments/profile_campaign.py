"""The profiling campaign behind the shipped tuner and the baselines' lookup profiles (STAC
§VI offline stage, issue 12): `stac`, `uniform`, `h264` and `grace` on the two real clips
(bikes, the default clip, and solidWhiteRight) at 480-pixel width (480x204 and 480x270),
10 s each (solidWhiteRight: its 8.84 s), keyframes at 2, 5 and 10 fps, seed 0, over a
constant 200 Mbps link. Each scheme is one resumable `stac-sim profile` campaign in
OUT/<scheme>_<model>/ (rerun to resume); its profiles.csv is what experiments/figures/profiles/
holds. Prints the commands it runs.

    nice -n 10 python experiments/profile_campaign.py /work/runs/profiles [--model bisenet]
        [--schemes stac,uniform,h264,grace] [--workers 2]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

#: each scheme's quality-knob grid (stac's B spans bisenet's tables, B_l 0.1-25)
GRIDS = {"stac": "0.25,0.5,1,2,4,8,16", "uniform": "6,10,14,18,22,26",
         "h264": "20,26,32,38,44", "grace": "6,10,14,18,22,26"}
FPS = "2,5,10"
WIDTH = 480
DURATION = 10.0
CLIPS = ("default", "solidWhiteRight.mp4")  # the second from the data root's videos/


def commands(out: Path, model: str, schemes: list[str], workers: int,
             data: Path) -> list[list[str]]:
    """One `stac-sim profile` command per scheme."""
    videos = []
    for clip in CLIPS:
        videos += ["--video", clip if clip == "default" else str(data / "videos" / clip)]
    return [[sys.executable, "-m", "stac.cli", "profile", "--scheme", scheme,
             "--values", GRIDS[scheme], "--fps", FPS, *videos, "--width", str(WIDTH),
             "--duration", str(DURATION), "--model", model, "--seed", "0",
             "--workers", str(workers), "--out", str(out / f"{scheme}_{model}")]
            for scheme in schemes]


def main() -> int:
    from stac.data import data_root

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="campaign folder (resumable)")
    p.add_argument("--model", default="bisenet")
    p.add_argument("--schemes", default="stac,uniform,h264,grace")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    code = 0
    for cmd in commands(args.out.resolve(), args.model, args.schemes.split(","), args.workers,
                        data_root().resolve()):
        print("$", shlex.join(cmd), flush=True)
        code |= subprocess.call(cmd)
    return code


if __name__ == "__main__":
    sys.exit(main())
