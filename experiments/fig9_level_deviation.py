"""Fig. 9 analogue (STAC §V-B): deviation between propagated and freshly computed levels.

For start frames k of a real clip, Algorithm 1 (fake-label gradients of the raw frame, the
model's shipped tables) gives the region levels of frame k; they are propagated along the
DIS flows of adjacent frames (composed, as the device does) to frame k + D and compared
with the levels Algorithm 1 computes on frame k + D itself, for D in 1, 2, 4, 8. The
paper reports ~90% of blocks with no deviation at D = 8 and most deviations within 3
levels. Deviations are counted per 4x4 luma block (each block carries its region's level),
as the paper's "pixel blocks"; as a control, the stale levels of frame k kept in place (no
propagation) are compared too.

Writes, per clip, CLIP/deviations.csv (one row per start, distance, region; flushed per
start), and summary.json (rewritten per start) and fig9_cdf.png into --out (default
experiments/figures/fig9_MODEL).

    python experiments/fig9_level_deviation.py --model bisenet --threads 1 \
        --videos default "$STAC_DATA/videos/solidWhiteRight.mp4" --starts 24
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from device.flow import DISFlow, FlowCache, FlowConfig, to_grey
from device.propagation import propagate_levels
from edge.gradients import dct_gradients
from edge.models.registry import resolve_model
from edge.selection import select_levels
from edge.tables import tables_for
from stac.codec.quant import luma_blocks, region_grid_shape
from stac.data import data_root
from stac.frames import open_source
from stac.schemes import DEFAULT_MODEL

REPO = Path(__file__).resolve().parent.parent
SHARED_VIDEOS = data_root() / "videos"


def region_block_counts(h: int, w: int, region_size: int = 6) -> np.ndarray:
    """(rows * cols,) number of 4x4 luma blocks in each region (border regions smaller)."""
    nby, nbx = luma_blocks(h, w)
    rows, cols = region_grid_shape(h, w, region_size)
    hs = np.minimum(region_size, nby - region_size * np.arange(rows))
    ws = np.minimum(region_size, nbx - region_size * np.arange(cols))
    return np.outer(hs, ws).ravel()


def fractions(dev: np.ndarray, weight: np.ndarray) -> dict:
    total = float(weight.sum())
    return {"no_deviation": float(weight[dev == 0].sum() / total),
            "within_1_level": float(weight[dev <= 1].sum() / total),
            "within_3_levels": float(weight[dev <= 3].sum() / total),
            "mean_deviation": float((weight * dev).sum() / total)}


def summarise(records: dict, meta: dict) -> dict:
    """records[clip][B][distance] = {"propagated": [(dev, w)...], "stale": [...]}."""
    out = dict(meta, clips={})
    for clip, per_b in records.items():
        out["clips"][clip] = {}
        for B, per_d in per_b.items():
            out["clips"][clip][B] = {
                str(d): {kind: fractions(np.concatenate([v[0] for v in vals]),
                                         np.concatenate([v[1] for v in vals]))
                         for kind, vals in kinds.items() if vals}
                for d, kinds in per_d.items()}
    return out


def clip_name(spec: str) -> str:
    return "bikes" if spec == "default" else Path(spec).stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="shipped name or checkpoint")
    parser.add_argument("--tables", default=None,
                        help="table file (default: the model's shipped edge/tables/NAME)")
    parser.add_argument("--videos", nargs="+", default=None,
                        help="clips ('default' = bikes.mp4; default: bikes.mp4 and "
                             "the data root's videos/*.mp4)")
    parser.add_argument("--size", default=None, help="WxH (default: each clip's own)")
    parser.add_argument("--B", type=float, nargs="+", default=None,
                        help="loss bounds (default: the tables' B_l at levels L/4, L/2, 3L/4)")
    parser.add_argument("--starts", type=int, default=16, help="start frames, evenly spaced")
    parser.add_argument("--distances", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: experiments/figures/fig9_MODEL")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    out = args.out or REPO / "experiments" / "figures" / f"fig9_{Path(args.model).stem}"
    videos = args.videos or ["default", *(str(p) for p in sorted(SHARED_VIDEOS.glob("*.mp4")))]
    model = resolve_model(args.model)
    tables = tables_for(model, args.tables)
    L = tables.levels
    bounds = args.B or [float(tables.bounds[i]) for i in (L // 4, L // 2, 3 * L // 4)]
    span = max(args.distances)
    meta = {"model": args.model, "tables": str(args.tables or "shipped"), "videos": videos,
            "B": bounds, "headline_B": bounds[len(bounds) // 2], "distances": args.distances,
            "command": "python experiments/fig9_level_deviation.py " + " ".join(
                f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(args).items() if v is not None)}
    records: dict = {}
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for video in videos:
        name = clip_name(video)
        frames = [f.rgb for f in open_source(video, size=size)]
        if len(frames) <= span:
            raise SystemExit(f"{video}: needs more than {span} frames")
        h, w = frames[0].shape[:2]
        weight = region_block_counts(h, w)
        starts = np.unique(np.linspace(0, len(frames) - 1 - span, args.starts).astype(int))
        meta.setdefault("sizes", {})[name] = [w, h]
        meta.setdefault("starts", {})[name] = starts.tolist()
        meta.setdefault("frames", {})[name] = len(frames)
        grads: dict[int, tuple] = {}

        def levels_of(i: int, B: float, frames=frames, grads=grads, h=h, w=w) -> np.ndarray:
            if i not in grads:
                grads[i] = dct_gradients(model, frames[i])[0].planes
            return select_levels(grads[i], tables.steps, B, h, w)

        rec = records[name] = {f"{B:.6g}": {d: {"propagated": [], "stale": []}
                                            for d in args.distances} for B in bounds}
        (out / name).mkdir(exist_ok=True)
        with open(out / name / "deviations.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["start", "distance", "B", "region", "blocks", "propagated",
                             "stale", "fresh"])
            for k in tqdm(starts, desc=name, unit="start"):
                cache = FlowCache(DISFlow(FlowConfig()))
                for t in range(k, k + span + 1):
                    cache.push(t, to_grey(frames[t]))
                    if t == k:
                        cache.set_anchor(k)
                    if t - k not in args.distances:
                        continue
                    flow, covered = cache.to_anchor(), cache.covered()
                    for B in bounds:
                        source = levels_of(k, B)
                        moved = propagate_levels(source, flow, covered).astype(int).ravel()
                        fresh = levels_of(t, B).astype(int).ravel()
                        stale = source.astype(int).ravel()
                        r = rec[f"{B:.6g}"][t - k]
                        r["propagated"].append((np.abs(moved - fresh), weight))
                        r["stale"].append((np.abs(stale - fresh), weight))
                        writer.writerows(
                            (int(k), t - k, f"{B:.6g}", i, int(n), int(p), int(s), int(q))
                            for i, (n, p, s, q) in enumerate(zip(weight, moved, stale, fresh,
                                                                 strict=True)))
                for i in [i for i in grads if i <= k]:  # later starts never look back
                    del grads[i]
                f.flush()
                summary = summarise(records, dict(meta,
                                                  wall_s=round(time.perf_counter() - t0, 1)))
                (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = f"{meta['headline_B']:.6g}"
    fig, axes = plt.subplots(1, len(records), figsize=(5 * len(records), 3.6), squeeze=False)
    for ax, (name, rec) in zip(axes[0], records.items(), strict=True):
        for d, kinds in rec[head].items():
            dev = np.concatenate([v[0] for v in kinds["propagated"]])
            wt = np.concatenate([v[1] for v in kinds["propagated"]])
            order = np.argsort(dev, kind="stable")
            ax.step(dev[order], np.cumsum(wt[order]) / wt.sum(), where="post",
                    label=f"distance {d}")
        ax.set_xlim(-0.5, 12)
        ax.set_xlabel("level deviation (propagated vs fresh)")
        ax.set_ylabel("CDF of 4x4 blocks")
        ax.set_title(f"{name}, B = {head}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig9_cdf.png", dpi=120)
    print(json.dumps({clip: {d: v["propagated"]["no_deviation"] for d, v in per[head].items()}
                      for clip, per in summary["clips"].items()}, indent=2))


if __name__ == "__main__":
    main()
