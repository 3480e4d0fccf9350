"""Evaluation of a trained model on a CamVid split: mIoU, pixel accuracy, per-class IoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.models.base import CLASS_NAMES
from edge.models.registry import load_model
from edge.training import evaluate_model, load_camvid

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
