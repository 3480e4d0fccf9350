"""Fig. 7 analogue (STAC §IV-B): true vs fake loss as quantisation error grows, and which
gradient predicts the loss increment best.

Each labelled CamVid image is quantised in the DCT domain with every table level l (the
codec's intra dead-zone quantiser), giving the total quantisation error ||ds|| and the
true loss Q_T (labels) and fake loss Q_F (the raw frame's argmax as label) of the decoded
frame. The first-order prediction sum g * ds of the true increment Q_T(l) - Q_T(raw) is
scored for g_T1 (true gradient at the raw frame), g_T2 (true gradient at a compressed
frame, level --mid) and g_F2 (fake gradient at that compressed frame: STAC's choice).
The paper finds g_F2 closest to the true speed of increase. Needs a trained model.
Writes curves.csv, summary.json and fig7.png into --out.

    python experiments/fig7_fake_vs_true.py --model bisenet --tables edge/tables/bisenet \
        --images 10 --out results/fig7
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edge.gradients import dct_gradients
from edge.models.base import IGNORE_INDEX
from edge.tables import load_tables
from stac.codec.quant import DEADZONE_INTRA, dequantise, quantise
from stac.codec.transform import coeffs_to_rgb, coeffs_to_rgb_torch, rgb_to_coeffs
from stac.frames import open_camvid
from stac.sim.runner import resolve_model


def losses(model, coeffs, h, w, labels, fake) -> tuple[float, float]:
    """(Q_T, Q_F) of the frame decoded from `coeffs` (unrounded, as the gradients see it)."""
    with torch.no_grad():
        x = coeffs_to_rgb_torch(*(torch.tensor(c, dtype=torch.float32) for c in coeffs), h, w)
        logits = model.step(x[None], model.initial_state())[0]
        q_t = F.cross_entropy(logits, torch.as_tensor(labels, dtype=torch.int64)[None],
                              ignore_index=IGNORE_INDEX)
        q_f = F.cross_entropy(logits, torch.as_tensor(fake, dtype=torch.int64)[None])
    return float(q_t), float(q_f)


def to_uint8(coeffs, h, w) -> np.ndarray:
    rgb = coeffs_to_rgb(*coeffs, h, w)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tables", required=True)
    parser.add_argument("--camvid", default="../shared/data/camvid")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--size", default=None, help="WxH (default: the images' own)")
    parser.add_argument("--mid", type=int, default=None, help="level of the compressed frame")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    model = resolve_model(args.model)
    t = load_tables(args.tables)
    mid = args.mid if args.mid is not None else t.levels // 2
    frames = [f for _, f in zip(range(args.images), open_camvid(args.camvid, "val", size=size),
                                strict=False)]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, pred = [], {"g_T1": [], "g_T2": [], "g_F2": []}
    actual = []
    with open(args.out / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "level", "quant_error", "Q_T", "Q_F", "dQ_T",
                         "pred_g_T1", "pred_g_T2", "pred_g_F2"])
        for k, frame in enumerate(tqdm(frames, desc="images", unit="image")):
            rgb, labels = frame.rgb, frame.label
            h, w = rgb.shape[:2]
            s = rgb_to_coeffs(rgb)
            fake = dct_gradients(model, rgb)[0].labels
            quantised = []
            for level in range(t.levels):
                q = [np.broadcast_to(t.steps[level, c], s[c].shape) for c in range(3)]
                quantised.append([dequantise(quantise(s[c], q[c], DEADZONE_INTRA), q[c])
                                  for c in range(3)])
            g_t1 = dct_gradients(model, rgb, labels=labels)[0].planes
            compressed = to_uint8(quantised[mid], h, w)
            g_t2 = dct_gradients(model, compressed, labels=labels)[0].planes
            g_f2 = dct_gradients(model, compressed)[0].planes
            q_t0, _ = losses(model, s, h, w, labels, fake)
            for level, sq in enumerate(quantised):
                ds = [a - b for a, b in zip(sq, s, strict=True)]
                q_t, q_f = losses(model, sq, h, w, labels, fake)
                preds = [sum(float(np.sum(g * d)) for g, d in zip(gr, ds, strict=True))
                         for gr in (g_t1, g_t2, g_f2)]
                err = sum(float(np.abs(d).sum()) for d in ds)
                writer.writerow([k, level, err, q_t, q_f, q_t - q_t0, *preds])
                rows.append((level, err, q_t, q_f))
                actual.append(q_t - q_t0)
                for name, p in zip(pred, preds, strict=True):
                    pred[name].append(p)
            f.flush()
    actual_arr = np.array(actual)
    summary = {"model": args.model, "tables": str(args.tables), "images": len(frames),
               "mid_level": mid, "prediction_of_dQ_T": {
                   name: {"pearson_r": float(np.corrcoef(p, actual_arr)[0, 1]),
                          "mean_abs_error": float(np.mean(np.abs(np.array(p) - actual_arr)))}
                   for name, p in pred.items()}}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = np.array([r[0] for r in rows])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for col, name in ((2, "true Q_T"), (3, "fake Q_F")):
        err = [np.mean([r[1] for r in rows if r[0] == lv]) for lv in np.unique(levels)]
        val = [np.mean([r[col] for r in rows if r[0] == lv]) for lv in np.unique(levels)]
        ax.plot(err, val, marker=".", label=name)
    ax.set_xlabel("total quantisation error ||ds||")
    ax.set_ylabel("loss (mean over images)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "fig7.png", dpi=120)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
