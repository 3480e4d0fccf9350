"""Evaluation of a trained model on a CamVid split: mIoU, pixel accuracy, per-class IoU."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import torch

from edge.models.base import CLASS_NAMES
from edge.models.registry import CHECKPOINT_DIR, load_model, save_checkpoint
from edge.training.data import load_camvid
from edge.training.trainer import evaluate_model

DEFAULT_RESOLUTION = (360, 480)


def evaluate(model: str | Path, data: str | Path, split: str = "val",
             resolution: tuple[int, int] | None = None, limit: int | None = None,
             batch_size: int = 4, progress: bool = False) -> dict[str, Any]:
    """Scores of a checkpoint (name or path) on `data/split`, each image from the initial state.

    The resolution defaults to the one on the checkpoint's card, else 360x480.
    """
    net = load_model(model)
    card = getattr(net, "card", {})
    res = tuple(resolution or card.get("resolution") or DEFAULT_RESOLUTION)
    data_set = load_camvid(data, split, res, limit=limit)
    scores = evaluate_model(net, data_set, batch_size=batch_size, progress=progress)
    return {"model": str(model), "split": split, "images": scores["images"],
            "resolution": list(res), "miou": scores["miou"],
            "pixel_accuracy": scores["pixel_accuracy"],
            "per_class_iou": dict(zip(CLASS_NAMES, scores["per_class_iou"], strict=True))}


SUBSET_IMAGES = 10   # the fixed val subset the tests re-check against the card (first N images)


def train_command(cfg: dict[str, Any]) -> str:
    """The `stac-sim models train` command line that reproduces a run's configuration."""
    res, crop = ("x".join(map(str, cfg[k])) for k in ("resolution", "crop"))
    parts = [f"stac-sim models train {cfg['name']} --data {cfg['data']} --out {cfg['out']}",
             f"--epochs {cfg['epochs']} --resolution {res} --crop {crop}",
             f"--batch-size {cfg['batch_size']} --optimizer {cfg['optimizer']} --lr {cfg['lr']}",
             f"--seed {cfg['seed']}"]
    if "scale" in cfg:
        parts.append(f"--scale {','.join(map(str, cfg['scale']))} "
                     f"--weight-decay {cfg['weight_decay']}")
    if cfg.get("model_config"):
        parts.append("--model-config " + " ".join(
            shlex.quote(f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}")
            for k, v in cfg["model_config"].items()))
    return " ".join(parts)


def export_checkpoint(run_model: str | Path, name: str, data: str | Path,
                      notes: str = "", dest: Path = CHECKPOINT_DIR) -> Path:
    """Ship a run's `model.pt` as `dest/NAME.pt` + `NAME.md` with a measured model card.

    The card's val mIoU is re-measured here on the full val split and on its first
    SUBSET_IMAGES images (the number the tests check), at the run's resolution.
    """
    ckpt = torch.load(run_model, map_location="cpu", weights_only=True)
    model = load_model(run_model)
    card = dict(ckpt.get("card", {}))
    cfg = card.get("train_config", {})
    full = evaluate(run_model, data, "val", progress=True)
    subset = evaluate(run_model, data, "val", limit=SUBSET_IMAGES)
    h, w = full["resolution"]
    cost = model.cost(h, w)
    card |= {"val_miou": full["miou"], "val_pixel_accuracy": full["pixel_accuracy"],
             "val_images": full["images"], "val_per_class_iou": full["per_class_iou"],
             "subset_val_miou": subset["miou"], "subset_images": subset["images"],
             "params": cost.params, "macs": cost.macs,
             "command": train_command(cfg) if cfg else card.get("command", "")}
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{name}.pt"
    save_checkpoint(model, ckpt["name"], ckpt["config"], out, card)
    out.with_suffix(".md").write_text(model_card(name, ckpt["name"], ckpt["config"], card,
                                                 type(model), notes))
    return out


def model_card(name: str, arch: str, config: dict[str, Any], card: dict[str, Any],
               cls: type, notes: str) -> str:
    """Markdown model card: architecture, resolution, data, command, seed, epochs, wall time,
    val mIoU (full split and the tests' subset), per-class IoU."""
    doc = (cls.__doc__ or "").strip().splitlines()[0].rstrip(".")
    h, w = card["resolution"]
    rows = "\n".join(f"| {k} | {'-' if v is None else f'{100 * v:.2f}'} |"
                     for k, v in card["val_per_class_iou"].items())
    cfg = card.get("train_config", {})
    return f"""# {name}: model card

- **Architecture:** `{arch}` ({cls.__module__}.{cls.__name__}: {doc}); builder config
  `{json.dumps(config)}`; {card['params'] / 1e6:.3f} M parameters,
  {card['macs'] / 1e9:.3f} GMACs per {h}x{w} frame.
- **Resolution:** frames of {h}x{w} (CamVid's native size); training crops
  {'x'.join(map(str, cfg.get('crop', ['?'])))} of randomly scaled images
  (scale {cfg.get('scale')}), flips and colour jitter.
- **Data:** {card.get('data', 'CamVid train')} (dataset `camvid`, see docs/data.md; 11 classes,
  void ignored); validated on CamVid val (101 images) after every epoch.
- **Command:** `{card['command']}`
- **Seed:** {card['seed']}; **epochs:** {card['epochs']}; **batch size:** {cfg.get('batch_size')};
  optimiser {cfg.get('optimizer')} (lr {cfg.get('lr')}, poly decay, class-weighted
  cross-entropy).
- **Wall time:** {card['wall_time_s'] / 60:.1f} min of training + per-epoch validation on
  a shared 2-core CPU (no GPU).
- **Val mIoU:** {100 * card['val_miou']:.2f} % (pixel accuracy
  {100 * card['val_pixel_accuracy']:.2f} %) on the full CamVid val split
  ({card['val_images']} images) at {h}x{w}, measured by
  `stac-sim models eval {name} --data "$(stac-sim data path camvid)" --split val`.
- **Test subset:** mIoU {100 * card['subset_val_miou']:.2f} % on the first
  {card['subset_images']} val images (checked by `tests/test_models_perframe.py`).

| class | val IoU (%) |
|---|---|
{rows}

{notes}
"""
