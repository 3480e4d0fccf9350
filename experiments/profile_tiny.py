"""A tiny profile to exercise the tuner's mechanics (not the paper's campaign): `stac` on
two clips at 96x64 for 3 s over a 3 x 3 (B, fps) grid on a constant wide trace, one
profile row per second (edge.profiles.rows_from_run).

    nice -n 19 python experiments/profile_tiny.py OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np
import torch

from edge.profiles import rows_from_run, write_profiles
from stac.sim.runner import run, run_options
from stac.traces import Trace, save_trace

VIDEOS = {"bikes": "default", "dashcam": "../shared/data/videos/solidWhiteRight.mp4"}
GRID_B = (1.0, 4.0, 16.0)
GRID_FPS = (2.5, 5.0, 10.0)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    trace = save_trace(Trace(np.array([0.0]), np.array([1e5]), end_s=10.0),
                       out / "wide.csv", "wide")
    rows = []
    for name, video in VIDEOS.items():
        for b in GRID_B:
            for fps in GRID_FPS:
                run_dir = out / "runs" / f"{name}_B{b:g}_fps{fps:g}"
                run(run_options(dict(trace=str(trace), out=str(run_dir), video=video,
                                     size=(96, 64), duration=3.0, source_fps=10.0,
                                     scheme="stac", B=b, fps=fps, model="bisenet",
                                     tuner="fixed")))
                rows += [r.__class__(**{**r.__dict__, "video": name})
                         for r in rows_from_run(run_dir)]
    write_profiles(rows, out / "profiles.csv")
    print(f"{len(rows)} rows -> {out / 'profiles.csv'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
