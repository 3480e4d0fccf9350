"""Fig. 6 analogue (STAC §IV-B, Eq. 3-6): region tables vs one uniform table at equal size.

For each CamVid image and bound B, Algorithm 1 picks a table level per region (sizes V_s,
Eq. 4); the uniform table with the same size (Eq. 5: the same product of steps, i.e. the
coefficient-weighted geometric mean of the regions' B_l) gives V_u = V_s (Eq. 3). Eq. 6
then compares the first-order loss changes |dQ_u| - |dQ_s| with the fake-label gradients;
the paper finds it > 0 for 100% of points. Needs a trained model and its tables for
meaningful numbers. Writes points.csv, summary.json and fig6.png into --out.

    python experiments/fig6_region_vs_uniform.py --model bisenet --tables edge/tables/bisenet \
        --data ../shared/data/camvid/val --images 20 --out results/fig6
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.gradients import dct_gradients
from edge.selection import block_regions, select_levels
from edge.tables import load_tables
from stac.codec.quant import region_grid_shape, size_model
from stac.codec.transform import rgb_to_coeffs
from stac.frames import open_source
from stac.sim.runner import resolve_model


def first_order_change(grads, coeffs, steps) -> float:
    """|sum g_s (s - floor(s / q) q)| over every coefficient (Eq. 6, one side)."""
    return abs(sum(float(np.sum(g * (s - np.floor(s / q) * q)))
                   for g, s, q in zip(grads, coeffs, steps, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tables", required=True)
    parser.add_argument("--data", default="../shared/data/camvid/val")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", default=None, help="WxH (default: the images' own)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    model = resolve_model(args.model)
    t = load_tables(args.tables)
    spec = t.meta.get("spec", {})
    q_min, q_max = spec.get("q_min", 0.5), spec.get("q_max", 2048.0)
    unit = 2.0 / (t.coefficients * t.mean_grad)  # q_n per unit of B (§IV-A)
    source = open_source(args.data, size=size)
    frames = [f.rgb for _, f in zip(range(args.images), source, strict=False)]
    args.out.mkdir(parents=True, exist_ok=True)
    points = []
    with open(args.out / "points.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "B", "V", "dQ_u", "dQ_s", "difference"])
        for k, rgb in enumerate(tqdm(frames, desc="images", unit="image")):
            h, w = rgb.shape[:2]
            grads, _ = dct_gradients(model, rgb)
            coeffs = rgb_to_coeffs(rgb)
            grid = region_grid_shape(h, w)
            for B in t.bounds[::2]:
                levels = select_levels(grads.planes, t.steps, B, h, w)
                # per-coefficient steps of the region tables, and their B_l (Eq. 4)
                region = [block_regions(c.shape[0], c.shape[1], grid, 6, chroma=i > 0)
                          for i, c in enumerate(coeffs)]
                lv = levels.ravel()
                steps_s = [t.steps[lv[r], i] for i, r in enumerate(region)]
                log_b = np.concatenate([np.repeat(np.log(t.bounds[lv[r]]).ravel(), 16)
                                        for r in region])
                B_u = float(np.exp(log_b.mean()))  # Eq. 5: equal product of steps
                steps_u = [np.broadcast_to(np.clip(B_u * unit[i], q_min, q_max), c.shape)
                           for i, c in enumerate(coeffs)]
                V_s = sum(float(size_model(c, q).sum()) for c, q in zip(coeffs, steps_s,
                                                                       strict=True))
                dq_s = first_order_change(grads.planes, coeffs, steps_s)
                dq_u = first_order_change(grads.planes, coeffs, steps_u)
                writer.writerow([k, B, V_s, dq_u, dq_s, dq_u - dq_s])
                points.append((V_s, dq_u - dq_s))
            f.flush()
    diff = np.array([p[1] for p in points])
    summary = {"model": args.model, "tables": str(args.tables), "data": str(args.data),
               "images": len(frames), "points": len(points),
               "fraction_above_zero": float(np.mean(diff > 0))}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter([p[0] / 8 / 1024 for p in points], diff, s=6)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("size model V_u = V_s (KiB)")
    ax.set_ylabel("|dQ_u| - |dQ_s|")
    fig.tight_layout()
    fig.savefig(args.out / "fig6.png", dpi=120)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
