"""Fig. 9 analogue (STAC §V-B): deviation between propagated and freshly computed levels.

For start frames k of a real clip, Algorithm 1 gives the region levels of frame k; they are
propagated along the DIS flows of the adjacent frames to k + D and compared with the levels
Algorithm 1 computes on frame k + D itself, for D in 1, 2, 4, 8. The paper reports ~90% of
blocks with no deviation at D = 8. Needs a trained model and its tables for meaningful
numbers (`untrained:NAME` runs the mechanics only). Writes deviations.csv, summary.json and
fig9_cdf.png into --out.

    python experiments/fig9_level_deviation.py --model bisenet --tables edge/tables/bisenet \
        --video ../shared/data/videos/solidWhiteRight.mp4 --out results/fig9
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from device.flow import DISFlow, FlowCache, FlowConfig, to_grey
from device.propagation import propagate_levels
from edge.gradients import dct_gradients
from edge.selection import select_levels
from edge.tables import load_tables
from stac.frames import open_source
from stac.sim.runner import resolve_model

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "videos" / "solidWhiteRight.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tables", required=True, help="table file from stac-sim tables build")
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--size", default="480x360", help="WxH")
    parser.add_argument("--B", type=float, default=None,
                        help="loss bound (default: the middle table's B_l)")
    parser.add_argument("--starts", type=int, default=8, help="start frames, evenly spaced")
    parser.add_argument("--distances", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    w, h = (int(v) for v in args.size.lower().split("x"))
    model = resolve_model(args.model)
    tables = load_tables(args.tables)
    B = float(args.B if args.B is not None else tables.bounds[tables.levels // 2])
    frames = [f.rgb for f in open_source(args.video, size=(w, h))]
    span = max(args.distances)
    if len(frames) <= span:
        raise SystemExit(f"{args.video}: needs more than {span} frames")
    starts = np.unique(np.linspace(0, len(frames) - 1 - span, args.starts).astype(int))
    fresh: dict[int, np.ndarray] = {}

    def levels_of(i: int) -> np.ndarray:
        if i not in fresh:
            grads, _ = dct_gradients(model, frames[i])
            fresh[i] = select_levels(grads.planes, tables.steps, B, h, w)
        return fresh[i]

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(args.out / "deviations.csv", "w", newline="") as f:  # written as it goes
        writer = csv.writer(f)
        writer.writerow(["start", "distance", "region", "propagated", "fresh", "deviation"])
        for k in tqdm(starts, desc="start frames", unit="start"):
            cache = FlowCache(DISFlow(FlowConfig()))
            for t in range(k, k + span + 1):
                cache.push(t, to_grey(frames[t]))
                if t == k:
                    cache.set_anchor(k)
                if t - k in args.distances:
                    moved = propagate_levels(levels_of(k), cache.to_anchor(), cache.covered())
                    dev = np.abs(moved.astype(int) - levels_of(t).astype(int)).ravel()
                    for r, (p, q, d) in enumerate(zip(moved.ravel(), levels_of(t).ravel(), dev,
                                                      strict=True)):
                        writer.writerow([int(k), t - k, r, int(p), int(q), int(d)])
                    rows.extend((t - k, int(d)) for d in dev)
            f.flush()
    devs = {d: np.array([v for dist, v in rows if dist == d]) for d in args.distances}
    summary = {"model": args.model, "tables": str(args.tables), "video": str(args.video),
               "size": [w, h], "B": B, "starts": starts.tolist(),
               "no_deviation": {d: float(np.mean(v == 0)) for d, v in devs.items()},
               "within_3_levels": {d: float(np.mean(v <= 3)) for d, v in devs.items()}}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for d, v in devs.items():
        x = np.sort(v)
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=f"distance {d}")
    ax.set_xlabel("level deviation (propagated vs fresh)")
    ax.set_ylabel("CDF of regions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "fig9_cdf.png", dpi=120)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
