"""Measured behaviour of the three streaming backbones on a real clip (issue 4's numbers).

- StreamDEQ (Figs. 4-5, 11-12 of the paper): squared distance of the M-iteration streaming
  representation (Eq. 6) to the converged one per frame, and agreement (PA, mIoU) of its
  predictions with the converged model's, for M in {1, 2, 4}, next to the non-streaming
  baseline (M iterations from zeros on every frame); per-frame cost at M=2 vs the per-frame
  target's.
- Adaptive propagation (Table 1): average and maximum per-frame time of the full network,
  AFP with a fixed key-frame schedule, AFP + adaptive key frames, and with low-latency
  scheduling; agreement with the full network's predictions.
- StreamFormer (Fig. 3): per-frame latency with the KV cache after 1..256 past frames, and
  with recomputation of the whole history instead of the cache.

Uses the shipped checkpoints when present, else untrained weights (said in the JSON). Prints
JSON; writes it (part by part, as each finishes) and figures under --out.

    python experiments/streaming_analysis.py [--frames 30] [--resolution 240x320]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge.models.registry import ModelError, build_model, load_model
from edge.training.data import to_tensor
from stac.data import data_root
from stac.frames import open_video
from stac.metrics import mean_iou, pixel_accuracy

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = data_root() / "videos" / "solidWhiteRight.mp4"
PARTS = ("streamdeq", "streamdeq_il", "adaptive_propagation", "propagation_val", "streamformer")


def _model(name: str, seed: int, **overrides: Any) -> tuple[torch.nn.Module, bool]:
    """The shipped checkpoint (with `overrides` applied as attributes), else untrained."""
    try:
        model, trained = load_model(name), True
        for key, value in overrides.items():
            setattr(model, key, value)
    except ModelError:
        torch.manual_seed(seed)
        model, trained = build_model(name, **overrides).eval(), False
    return model, trained


def _clip(video: str, resolution: tuple[int, int], frames: int) -> torch.Tensor:
    h, w = resolution
    return to_tensor(np.stack([f.rgb for f in open_video(video, size=(w, h),
                                                         max_frames=frames)]))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _agreement(pred: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    p, r = pred.numpy(), ref.numpy()
    return pixel_accuracy(p, r, ignore_index=None), mean_iou(p, r, ignore_index=None)


# --- StreamDEQ ------------------------------------------------------------------------------
@torch.no_grad()
def streamdeq_analysis(clip: torch.Tensor, iterations: list[int], ref_iter: int,
                       seed: int, solver: str = "unroll") -> dict[str, Any]:
    """Eq. 6 streaming vs the per-frame baseline; `solver` "unroll" ((S)UR-StreamDEQ) or
    "anderson" (IL-StreamDEQ: Anderson iterations per frame and for the reference)."""
    model, trained = _model("streamdeq", seed, solver=solver)
    refs, ref_labels, ref_res = [], [], []
    for t in range(clip.shape[0]):
        z = model.converged(clip[t:t + 1], max_iter=ref_iter, tol=1e-5)
        refs.append(model.pack(z))
        ref_labels.append(model.logits(z, clip.shape[-2:]).argmax(1))
        ref_res.append(model.last_stats.residual)
    out: dict[str, Any] = {"trained": trained, "solver": model.solver,
                           "reference_iterations": ref_iter,
                           "reference_residual_max": max(ref_res),
                           "reference_residual_median": statistics.median(ref_res),
                           "streaming": {}, "per_frame_baseline": {}}
    for m in iterations:
        model.iterations = m
        for mode in ("streaming", "per_frame_baseline"):
            rows, state = {"sq_distance": [], "rel_distance": [], "pa": [], "miou": []}, None
            for t in range(clip.shape[0]):
                logits, nxt = model.step(clip[t:t + 1], state if mode == "streaming" else None)
                state = nxt
                d = model.pack(nxt) - refs[t]
                rows["sq_distance"].append(float(d.square().sum()))
                rows["rel_distance"].append(float(d.norm() / refs[t].norm()))
                pa, miou = _agreement(logits.argmax(1), ref_labels[t])
                rows["pa"].append(pa)
                rows["miou"].append(miou)
            out[mode][str(m)] = rows
    # Cost at 360x480: StreamDEQ with M=2 against the per-frame target (the default model).
    model.iterations = 2
    target, target_trained = _model("drn_d_22", seed)
    frame = torch.rand(1, 3, 360, 480)
    out["cost_360x480"] = {
        "streamdeq_m2_macs": model.cost(360, 480).macs,
        "streamdeq_params": sum(p.numel() for p in model.parameters()),
        "target": "drn_d_22", "target_trained": target_trained,
        "target_config": getattr(target, "card", {}).get("train_config", {}).get(
            "model_config", "builder defaults (width 1.0)"),
        "target_macs": target.cost(360, 480).macs,
        "target_params": sum(p.numel() for p in target.parameters()),
        "streamdeq_m2_ms": 1000 * _median_time(lambda s: model.step(frame, s), stateful=True),
        "target_ms": 1000 * _median_time(lambda s: (target(frame), None)),
    }
    return out


def _median_time(step, stateful: bool = False, repeats: int = 5) -> float:
    """Median wall time of `step(state) -> (out, state)` after one warm-up call."""
    _, state = step(None)
    times = []
    for _ in range(repeats):
        (_, nxt), dt = _timed(lambda s=state: step(s))
        state = nxt if stateful else state
        times.append(dt)
    return statistics.median(times)


# --- adaptive propagation -------------------------------------------------------------------
@torch.no_grad()
def propagation_analysis(clip: torch.Tensor, key_interval: int, seed: int) -> dict[str, Any]:
    model, trained = _model("adaptive_propagation", seed)
    model.full(clip[:1])                                           # warm-up
    full_labels, full_times = [], []
    for t in range(clip.shape[0]):
        logits, dt = _timed(lambda t=t: model.full(clip[t:t + 1]))
        full_labels.append(logits.argmax(1))
        full_times.append(dt)
    variants = {
        "AFP + fix schedule": {"key_interval": key_interval, "low_latency": False},
        "AFP + AKS": {"key_interval": None, "low_latency": False},
        "AFP + fix schedule + LLS": {"key_interval": key_interval, "low_latency": True},
        "AFP + AKS + LLS": {"key_interval": None, "low_latency": True},
    }
    out: dict[str, Any] = {"trained": trained, "threshold": model.threshold,
                           "slow_track_frames": len(model.slow_chunks),
                           "frames": clip.shape[0],
                           "macs_360x480": {k: v.macs for k, v in
                                            model.cost_breakdown(360, 480).items()},
                           "variants": {"full network": _summary(full_times, ["full"] *
                                                                 len(full_times))}}
    for name, cfg in variants.items():
        model.key_interval, model.low_latency = cfg["key_interval"], cfg["low_latency"]
        times, kinds, devs, pas, mious, state = [], [], [], [], [], None
        for t in range(clip.shape[0]):
            (logits, state), dt = _timed(lambda t=t, s=state: model.step(clip[t:t + 1], s))
            times.append(dt)
            kinds.append(state.last_kind)
            devs.append(state.last_deviation)
            pa, miou = _agreement(logits.argmax(1), full_labels[t])
            pas.append(pa)
            mious.append(miou)
        row = _summary(times, kinds)
        row.update(pa_vs_full=float(np.mean(pas)), miou_vs_full=float(np.mean(mious)),
                   predicted_deviation_mean=float(np.mean(devs[1:])), times_ms=row["times_ms"])
        out["variants"][name] = row
    return out


def _summary(times: list[float], kinds: list[str]) -> dict[str, Any]:
    """Average and maximum time per frame (the first frame, always full, left out) and the
    median time of each kind of step (robust to the load spikes of a shared host)."""
    ms = [1000 * t for t in times]
    by_kind: dict[str, list[float]] = {}
    for kind, t in zip(kinds[1:], ms[1:], strict=True):
        by_kind.setdefault(kind, []).append(t)
    return {"avg_ms": float(np.mean(ms[1:])), "max_ms": float(np.max(ms[1:])),
            "median_ms_by_kind": {k: statistics.median(v) for k, v in by_kind.items()},
            "key_frames": sum(k in ("full", "fast-key") for k in kinds[1:]),
            "kinds": kinds, "times_ms": ms}


@torch.no_grad()
def propagation_val(data: Path, gaps: int, limit: int | None, seed: int) -> dict[str, Any]:
    """mIoU on CamVid val of the full network vs propagation from a key frame `gap` frames
    back, on clips made from each val still by a smooth random camera motion (edge.training.clips):
    frame 0 is the key frame; each later frame is scored against its warped true label."""
    from edge.training.clips import Motion, still_clip
    from edge.training.data import Augment, load_camvid
    from stac.metrics import ConfusionMatrix

    model, trained = _model("adaptive_propagation", seed)
    val = load_camvid(data, "val", (360, 480), limit=limit)
    augment = Augment(crop=(360, 480), scale=(1.0, 1.0), flip=False)
    rng = np.random.default_rng(seed)
    full = {g: ConfusionMatrix() for g in range(1, gaps + 1)}
    prop = {g: ConfusionMatrix() for g in range(1, gaps + 1)}
    for image, label in zip(val.images, val.labels, strict=True):
        frames, labels = still_clip(image, label, gaps + 1, augment, Motion(), rng)
        clip = to_tensor(frames)
        key_low = model.low_features(clip[:1])
        key_high = model.high_features(key_low)
        for g in range(1, gaps + 1):
            low = model.low_features(clip[g:g + 1])
            _, fused = model.propagate(key_low, key_high, low)
            prop[g].update(model.segment(fused, clip.shape[-2:]).argmax(1)[0].numpy(),
                           labels[g])
            full[g].update(model.full(clip[g:g + 1]).argmax(1)[0].numpy(), labels[g])
    return {"trained": trained, "images": len(val),
            "full_miou": {str(g): full[g].miou() for g in full},
            "propagated_miou": {str(g): prop[g].miou() for g in prop}}


# --- StreamFormer ---------------------------------------------------------------------------
@torch.no_grad()
def streamformer_analysis(clip: torch.Tensor, history: list[int], recompute: list[int],
                          seed: int) -> dict[str, Any]:
    model, trained = _model("streamformer", seed)
    n = clip.shape[0]
    frame_at = lambda t: clip[t % n:t % n + 1]                    # noqa: E731  (clip loops)
    state, cache_ms = None, []
    model.step(frame_at(0), None)                                  # warm-up
    for t in range(max(history) + 1):
        (_, state), dt = _timed(lambda t=t, s=state: model.step(frame_at(t), s))
        cache_ms.append(1000 * dt)
    out: dict[str, Any] = {"trained": trained, "window": model.window,
                           "kv_cache_ms": {str(h): cache_ms[h] for h in history},
                           "kv_cache_ms_all": cache_ms, "recompute_ms": {}}
    for h in recompute:
        frames = torch.cat([frame_at(t) for t in range(h + 1)])[None]
        logits, dt = _timed(lambda f=frames: model.forward_clip(f))
        out["recompute_ms"][str(h)] = 1000 * dt
        if h == recompute[0]:   # the cache and recomputation give the same logits
            st = None
            for t in range(h + 1):
                last, st = model.step(frame_at(t), st)
            out["max_abs_diff_cache_vs_recompute"] = float((last - logits[0, -1]).abs().max())
    return out


# --- figures --------------------------------------------------------------------------------
def figures(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for part, label in (("streamdeq", "StreamDEQ"), ("streamdeq_il", "IL-StreamDEQ")):
        if part not in results:
            continue
        r = results[part]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for m, rows in r["streaming"].items():
            line, = axes[0].plot(rows["sq_distance"], label=f"{label} M={m}")
            axes[0].plot(r["per_frame_baseline"][m]["sq_distance"], "--",
                         color=line.get_color(), label=f"per-frame M={m}")
            axes[1].plot(rows["miou"], color=line.get_color(), label=f"{label} M={m}")
            axes[1].plot(r["per_frame_baseline"][m]["miou"], "--", color=line.get_color(),
                         label=f"per-frame M={m}")
        axes[0].set(xlabel="frame", ylabel="squared distance to z*", yscale="log",
                    title=f"{label}: representation distance (cf. Fig. 5)")
        axes[1].set(xlabel="frame", ylabel="mIoU vs converged model",
                    title=f"{label}: prediction agreement (cf. Figs. 11-12)")
        axes[0].legend(fontsize=7)
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        paths.append(_save(fig, out / f"{part}_streaming.png"))
    if "adaptive_propagation" in results:
        r = results["adaptive_propagation"]["variants"]
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, row in r.items():
            ax.plot(row["times_ms"][1:], label=f"{name} (avg {row['avg_ms']:.0f} ms)")
        ax.set(xlabel="frame", ylabel="time per frame (ms)",
               title="Adaptive propagation: per-frame latency (cf. Table 1)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(_save(fig, out / "adaptive_propagation_latency.png"))
    if "streamformer" in results:
        r = results["streamformer"]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(range(1, len(r["kv_cache_ms_all"]) + 1), r["kv_cache_ms_all"], ".",
                markersize=3, label="KV cache")
        rec = r["recompute_ms"]
        ax.plot([int(h) + 1 for h in rec], list(rec.values()), "o-", label="recompute")
        ax.set(xlabel="frames in the stream", ylabel="latency of the newest frame (ms)",
               xscale="log", yscale="log", title="StreamFormer (cf. Fig. 3)")
        ax.legend()
        fig.tight_layout()
        paths.append(_save(fig, out / "streamformer_latency.png"))
    return paths


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def _resolution(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--frames", type=int, default=30, help="clip length for StreamDEQ")
    parser.add_argument("--resolution", type=_resolution, default=(240, 320),
                        help="HxW of the StreamDEQ clip (default 240x320)")
    parser.add_argument("--iterations", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--reference-iterations", type=int, default=60)
    parser.add_argument("--propagation-frames", type=int, default=40)
    parser.add_argument("--key-interval", type=int, default=5)
    parser.add_argument("--data", type=Path, default=data_root() / "camvid")
    parser.add_argument("--val-limit", type=int, default=40,
                        help="CamVid val images for the propagation mIoU (default 40)")
    parser.add_argument("--history", type=int, nargs="+",
                        default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    parser.add_argument("--recompute", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "figures")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "streaming_analysis.json"
    results: dict[str, Any] = {"video": Path(args.video).name, "threads":
                               torch.get_num_threads(), "seed": args.seed}
    if json_path.exists():   # a re-run of some parts keeps the other parts' results
        kept = json.loads(json_path.read_text())
        results.update({k: kept[k] for k in PARTS if k in kept and k not in args.parts})
    runs = {
        "streamdeq": lambda: streamdeq_analysis(
            _clip(args.video, args.resolution, args.frames), args.iterations,
            args.reference_iterations, args.seed),
        "streamdeq_il": lambda: streamdeq_analysis(
            _clip(args.video, args.resolution, args.frames), args.iterations,
            args.reference_iterations, args.seed, solver="anderson"),
        "adaptive_propagation": lambda: propagation_analysis(
            _clip(args.video, (360, 480), args.propagation_frames), args.key_interval,
            args.seed),
        "propagation_val": lambda: propagation_val(args.data, args.key_interval - 1,
                                                   args.val_limit, args.seed),
        "streamformer": lambda: streamformer_analysis(
            _clip(args.video, (360, 480), 16), args.history, args.recompute, args.seed),
    }
    for part in args.parts:
        t0 = time.perf_counter()
        results[part] = runs[part]()
        results[part]["wall_s"] = round(time.perf_counter() - t0, 1)
        if part.startswith("streamdeq"):
            results[part]["resolution"] = list(args.resolution)
        json_path.write_text(json.dumps(results, indent=1))    # keep what is done
    results["figures"] = figures(results, args.out)
    json_path.write_text(json.dumps(results, indent=1))
    print(json.dumps(_brief(results), indent=2))


def _brief(results: dict[str, Any]) -> dict[str, Any]:
    """The printed summary: the per-frame series shortened to every few frames."""
    brief = json.loads(json.dumps(results))
    for mode, part in ((m, p) for m in ("streaming", "per_frame_baseline")
                       for p in ("streamdeq", "streamdeq_il")):
        for rows in brief.get(part, {}).get(mode, {}).values():
            for key, series in rows.items():
                rows[key] = [round(v, 4) for v in series[::5]] + [round(series[-1], 4)]
    for row in brief.get("adaptive_propagation", {}).get("variants", {}).values():
        row.pop("times_ms", None)
        row["kinds"] = "".join({"full": "F", "fast-key": "K", "propagated": "."}[k]
                               for k in row["kinds"])
    brief.get("streamformer", {}).pop("kv_cache_ms_all", None)
    return brief


if __name__ == "__main__":
    main()
