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

#: each scheme's quality-knob grid: stac's B in factors of 4 across bisenet's tables (B_l
#: 0.1-25), the baselines' knob over the same range of bitrates (docs/benchmarks.md, Fig. 11
#: analogue); kept small because the campaign ran on 2 shared cores (a finer grid: --grid)
GRIDS = {"stac": "0.25,1,4,16", "uniform": "6,14,22", "h264": "20,32,44", "grace": "6,14,22"}
FPS = "2,5,10"
WIDTH = 480
DURATION = 10.0
CLIPS = ("default", "solidWhiteRight.mp4")  # the second from the data root's videos/


def commands(out: Path, model: str, schemes: list[str], workers: int,
             data: Path, duration: float = DURATION) -> list[list[str]]:
    """One `stac-sim profile` command per scheme."""
    videos = []
    for clip in CLIPS:
        videos += ["--video", clip if clip == "default" else str(data / "videos" / clip)]
    return [[sys.executable, "-m", "stac.cli", "profile", "--scheme", scheme,
             "--values", GRIDS[scheme], "--fps", FPS, *videos, "--width", str(WIDTH),
             "--duration", str(duration), "--model", model, "--seed", "0",
             "--workers", str(workers), "--out", str(out / f"{scheme}_{model}")]
            for scheme in schemes]


def main() -> int:
    from stac.data import data_root

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="campaign folder (resumable)")
    p.add_argument("--model", default="bisenet")
    p.add_argument("--schemes", default="stac,uniform,h264,grace")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--duration", type=float, default=DURATION,
                   help="seconds of each clip (default %(default)s)")
    p.add_argument("--grid", action="append", default=[], metavar="SCHEME=V1,V2,...",
                   help="another knob grid for a scheme (e.g. stac=0.25,0.5,1,2,4,8,16)")
    args = p.parse_args()
    for item in args.grid:
        scheme, _, values = item.partition("=")
        GRIDS[scheme] = values
    code = 0
    for cmd in commands(args.out.resolve(), args.model, args.schemes.split(","), args.workers,
                        data_root().resolve(), args.duration):
        print("$", shlex.join(cmd), flush=True)
        code |= subprocess.call(cmd)
    return code


if __name__ == "__main__":
    sys.exit(main())
