"""Fig. 7 analogue (STAC §IV-B): true vs fake loss as quantisation error grows, and which
gradient predicts the true loss increment best.

Each labelled CamVid image is quantised in the DCT domain with one table level l over the
whole frame (the codec's intra dead-zone quantiser, the model's shipped tables), giving the
total quantisation error ||ds|| = sum |ds_i| and, on the decoded (unrounded) frame, the true
loss Q_T (CamVid labels) and the fake losses Q_F (label: the raw frame's argmax) and
Q_F' (label: the compressed frame's own argmax, the loss STAC differentiates). The true
increment dQ_T(l) = Q_T(l) - Q_T(raw) is then predicted to first order, sum g . ds, by

- g_T1: the true gradient at the raw frame;
- g_T2: the true gradient at the compressed frame of level l;
- g_F2: the fake gradient (Q_F') at the compressed frame of level l: STAC's choice.

Two predictions are scored: the total increment from the raw frame (ds = s_l - s), and the
local speed of increase between consecutive evaluated levels (ds = s_l+1 - s_l, gradient
at level l: the slope of the Q_T curve that the paper calls g_T'). Each is scored signed
(sum g ds) and in the relaxed form STAC's Algorithm 1 uses (sum |g| |ds|), by Pearson and
Spearman correlation with the measured increment over all (image, level) points, and the
mean absolute error. The paper finds g_F2 closest to the true speed g_T'.

Writes curves.csv (flushed per image), summary.json (rewritten per image) and fig7.png into
--out (default experiments/figures/fig7_MODEL).

    python experiments/fig7_fake_vs_true.py --model bisenet --images 20 --level-step 2 \
        --threads 1
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from tqdm import tqdm

from edge.models.base import IGNORE_INDEX
from edge.models.registry import resolve_model
from edge.tables import tables_for
from stac.codec.quant import DEADZONE_INTRA, dequantise, quantise
from stac.codec.transform import coeffs_to_rgb_torch, rgb_to_coeffs
from stac.data import data_root
from stac.frames import open_camvid
from stac.schemes import DEFAULT_MODEL

REPO = Path(__file__).resolve().parent.parent
GRADIENTS = ("g_T1", "g_T2", "g_F2")


def evaluate(model, coeffs, h, w, labels, fake_raw) -> dict:
    """One forward pass on the frame decoded from `coeffs` (unclamped, unrounded, as the
    gradients see it): Q_T, Q_F, Q_F' and the gradients of Q_T and Q_F' w.r.t. coeffs."""
    coef = [torch.tensor(c, dtype=torch.float32, requires_grad=True) for c in coeffs]
    x = coeffs_to_rgb_torch(*coef, h, w)
    logits = model.step(x[None], model.initial_state())[0]
    own = logits.detach().argmax(1)
    q_t = F.cross_entropy(logits, torch.as_tensor(labels, dtype=torch.int64)[None],
                          ignore_index=IGNORE_INDEX)
    q_f = F.cross_entropy(logits.detach(), torch.as_tensor(fake_raw, dtype=torch.int64)[None])
    q_own = F.cross_entropy(logits, own)
    g_t = torch.autograd.grad(q_t, coef, retain_graph=True)
    g_f = torch.autograd.grad(q_own, coef)
    return {"Q_T": float(q_t.detach()), "Q_F": float(q_f), "Q_F_own": float(q_own.detach()),
            "g_T": [g.numpy() for g in g_t], "g_F": [g.numpy() for g in g_f],
            "labels": own[0].numpy()}


def dot(g, d) -> float:
    return sum(float(np.sum(a * b)) for a, b in zip(g, d, strict=True))


def absdot(g, d) -> float:
    return sum(float(np.sum(np.abs(a) * np.abs(b))) for a, b in zip(g, d, strict=True))


def score(pred: list[float], actual: list[float]) -> dict:
    p, a = np.asarray(pred), np.asarray(actual)
    if len(p) < 3:
        return {}
    return {"pearson_r": float(np.corrcoef(p, a)[0, 1]),
            "spearman_rho": float(stats.spearmanr(p, a).statistic),
            "mean_abs_error": float(np.mean(np.abs(p - a))),
            "median_ratio_pred_over_actual": float(np.median(p / np.where(a == 0, np.nan, a)))
            if np.any(a != 0) else None}


def summarise(rows: list[dict], meta: dict) -> dict:
    out = dict(meta, images=len({r["image"] for r in rows}), points=len(rows))
    for kind, actual_key in (("total", "dQ_T"), ("local", "dQ_T_local")):
        sel = [r for r in rows if r[actual_key] is not None and np.isfinite(r[actual_key])]
        actual = [r[actual_key] for r in sel]
        out[f"prediction_of_{actual_key}"] = {
            f"{name}{suffix}": score([r[f"{kind}_{name}{suffix}"] for r in sel], actual)
            for name in GRADIENTS for suffix in ("", "_abs")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="shipped name or checkpoint")
    parser.add_argument("--tables", default=None,
                        help="table file (default: the model's shipped edge/tables/NAME)")
    parser.add_argument("--camvid", default=str(data_root() / "camvid"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--level-step", type=int, default=2,
                        help="evaluate every k-th table level (0, k, 2k, ...)")
    parser.add_argument("--size", default=None, help="WxH (default: the images' own)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: experiments/figures/fig7_MODEL")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    out = args.out or REPO / "experiments" / "figures" / f"fig7_{Path(args.model).stem}"
    model = resolve_model(args.model)
    t = tables_for(model, args.tables)
    levels = list(range(0, t.levels, args.level_step))
    source = open_camvid(args.camvid, args.split, size=size)
    frames = [f for _, f in zip(range(args.images), source, strict=False)]
    meta = {"model": args.model, "tables": str(args.tables or "shipped"),
            "camvid": f"{args.camvid}/{args.split}", "levels": levels,
            "command": "python experiments/fig7_fake_vs_true.py " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                if v is not None)}
    out.mkdir(parents=True, exist_ok=True)
    fields = ["image", "level", "quant_error", "Q_T", "Q_F", "Q_F_own", "dQ_T", "dQ_T_local",
              *(f"{kind}_{g}{suffix}" for kind in ("total", "local") for g in GRADIENTS
                for suffix in ("", "_abs"))]
    rows: list[dict] = []
    t0 = time.perf_counter()
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for k, frame in enumerate(tqdm(frames, desc="images", unit="image")):
            rgb, labels = frame.rgb, frame.label
            h, w = rgb.shape[:2]
            s = list(rgb_to_coeffs(rgb))
            with torch.no_grad():
                x = coeffs_to_rgb_torch(*(torch.tensor(c, dtype=torch.float32) for c in s), h, w)
                fake_raw = model.step(x[None], model.initial_state())[0].argmax(1)[0].numpy()
            raw = evaluate(model, s, h, w, labels, fake_raw)
            g_t1 = raw["g_T"]
            quantised = []
            for level in levels:
                q = [np.broadcast_to(t.steps[level, c], s[c].shape) for c in range(3)]
                quantised.append([dequantise(quantise(s[c], q[c], DEADZONE_INTRA), q[c])
                                  for c in range(3)])
            evals = [evaluate(model, sq, h, w, labels, fake_raw) for sq in quantised]
            for i, (level, sq, ev) in enumerate(zip(levels, quantised, evals, strict=True)):
                ds = [a - b for a, b in zip(sq, s, strict=True)]
                grads = {"g_T1": g_t1, "g_T2": ev["g_T"], "g_F2": ev["g_F"]}
                row = {"image": k, "level": level,
                       "quant_error": sum(float(np.abs(d).sum()) for d in ds),
                       "Q_T": ev["Q_T"], "Q_F": ev["Q_F"], "Q_F_own": ev["Q_F_own"],
                       "dQ_T": ev["Q_T"] - raw["Q_T"]}
                for name, g in grads.items():
                    row[f"total_{name}"] = dot(g, ds)
                    row[f"total_{name}_abs"] = absdot(g, ds)
                if i + 1 < len(levels):
                    step = [a - b for a, b in zip(quantised[i + 1], sq, strict=True)]
                    row["dQ_T_local"] = evals[i + 1]["Q_T"] - ev["Q_T"]
                    for name, g in grads.items():
                        row[f"local_{name}"] = dot(g, step)
                        row[f"local_{name}_abs"] = absdot(g, step)
                else:
                    row["dQ_T_local"] = None
                    for name in grads:
                        row[f"local_{name}"] = row[f"local_{name}_abs"] = None
                writer.writerow(row)
                rows.append(row)
            f.flush()
            summary = summarise(rows, dict(meta, wall_s=round(time.perf_counter() - t0, 1)))
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    err = [np.mean([r["quant_error"] for r in rows if r["level"] == lv]) for lv in levels]
    for key, name in (("Q_T", "true Q_T"), ("Q_F", "fake Q_F (raw argmax)"),
                      ("Q_F_own", "fake Q_F' (own argmax)")):
        val = [np.mean([r[key] for r in rows if r["level"] == lv]) for lv in levels]
        axes[0].plot(err, val, marker=".", label=name)
    axes[0].set_xlabel("total quantisation error ||ds||")
    axes[0].set_ylabel("loss (mean over images)")
    axes[0].legend(fontsize=8)
    for ax, kind, actual_key in ((axes[1], "total", "dQ_T"), (axes[2], "local", "dQ_T_local")):
        sel = [r for r in rows if r[actual_key] is not None]
        a = [r[actual_key] for r in sel]
        for name in GRADIENTS:
            r_ = summary[f"prediction_of_{actual_key}"][name].get("pearson_r", float("nan"))
            ax.scatter(a, [r[f"{kind}_{name}"] for r in sel], s=5,
                       label=f"{name} (r={r_:.2f})")
        ax.axline((0, 0), slope=1, color="k", lw=0.8)
        ax.set_xlabel(f"measured {actual_key}")
        ax.set_ylabel("first-order prediction sum g ds")
        ax.set_title("increment from raw" if kind == "total" else "between adjacent levels",
                     fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig7.png", dpi=120)
    print(json.dumps({k: v for k, v in summary.items() if k.startswith("prediction")},
                     indent=2))


if __name__ == "__main__":
    main()
