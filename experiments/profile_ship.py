"""Ship a model's tuners from a finished profiling campaign (experiments/profile_campaign.py):
copy each scheme's profiles into experiments/figures/profiles/ (SCHEME_MODEL.csv, dominated
rows dropped; SCHEME_MODEL_all.csv, every row) and edge/tuners/MODEL-SCHEME.csv (the lookup
of `--tuner offline`), then train the §VI network and its two ablations on the committed
stac profile, holding --val-video back: edge/tuners/MODEL.pt, MODEL-nn-no-c.pt,
MODEL-nn-no-d.pt, each with its card (.json, .md). Prints the commands it runs.

    nice -n 10 python experiments/profile_ship.py /work/runs/profiles --model bisenet
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURES = Path("experiments/figures/profiles")
TUNERS = Path("edge/tuners")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="the campaign folder")
    p.add_argument("--model", default="bisenet")
    p.add_argument("--val-video", default="solidWhiteRight")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    (REPO / FIGURES).mkdir(parents=True, exist_ok=True)
    (REPO / TUNERS).mkdir(parents=True, exist_ok=True)
    for campaign in sorted(args.out.glob(f"*_{args.model}")):
        scheme = campaign.name[: -len(args.model) - 1]
        if not (campaign / "profiles.csv").is_file():
            print(f"skip {campaign}: no profiles.csv yet")
            continue
        shutil.copy(campaign / "profiles.csv", REPO / FIGURES / f"{scheme}_{args.model}.csv")
        shutil.copy(campaign / "profiles_all.csv",
                    REPO / FIGURES / f"{scheme}_{args.model}_all.csv")
        shutil.copy(campaign / "profiles.csv", REPO / TUNERS / f"{args.model}-{scheme}.csv")
        print(f"{scheme}: profiles copied")
    profiles = FIGURES / f"stac_{args.model}.csv"
    code = 0
    for variant in ("nn", "nn-no-c", "nn-no-d"):
        name = f"{args.model}.pt" if variant == "nn" else f"{args.model}-{variant}.pt"
        cmd = [sys.executable, "-m", "stac.cli", "tuner", "train", str(profiles), "--out",
               str(TUNERS / name), "--val-video", args.val_video, "--variant", variant,
               "--seed", str(args.seed)]
        print("$", shlex.join(cmd), flush=True)
        code |= subprocess.call(cmd, cwd=REPO)
    return code


if __name__ == "__main__":
    sys.exit(main())
