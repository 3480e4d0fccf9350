"""Training of the edge segmentation models on CamVid (11 classes + void), resumable.

Per-frame models train on augmented stills (random scale, crop, flip, colour jitter) with
class-weighted cross-entropy (void = IGNORE_INDEX is ignored) and a poly learning rate;
validation runs after every epoch (mIoU, pixel accuracy, per-class IoU). Temporal models
train on short clips (`edge.training.clips`) through the same loop: a clip batch is (N, T, 3, H, W)
and the loss steps the model through the clip with its state carried.

A run directory holds `train_state.pt` (model, optimiser, epoch, RNG states: `--resume`
continues exactly), `history.jsonl` (one line per epoch, appended as it goes) and
`model.pt`, a project checkpoint of the latest epoch that `load_model(path)` reads; with
`save_best`, also `best.pt`, the checkpoint of the epoch with the highest val mIoU so far
(model selection by val).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edge.models.base import IGNORE_INDEX, NUM_CLASSES, StreamingSegmenter
from edge.models.registry import build_model, load_model, save_checkpoint
from edge.training import clips
from edge.training.data import (
    Augment,
    SegmentationSet,
    class_weights,
    load_camvid,
    still_batches,
    to_tensor,
)
from stac.frames import FrameError
from stac.metrics import ConfusionMatrix

__all__ = ["FrameError", "TrainConfig", "train", "evaluate_model", "clip_loss", "frame_loss"]


# ---------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate_model(model: StreamingSegmenter, data: SegmentationSet, batch_size: int = 4,
                   progress: bool = False) -> dict[str, Any]:
    """Per-frame scores (each image from the initial state): mIoU, PA, per-class IoU, images."""
    model.eval()
    conf = ConfusionMatrix(NUM_CLASSES, IGNORE_INDEX)
    starts = range(0, len(data), batch_size)
    for start in tqdm(starts, desc="eval", unit="batch", disable=not progress, leave=False):
        frames = to_tensor(data.images[start:start + batch_size])
        logits = model(frames)
        conf.update(logits.argmax(1).numpy(), data.labels[start:start + batch_size])
    return {"miou": conf.miou(), "pixel_accuracy": conf.pixel_accuracy(),
            "per_class_iou": [None if np.isnan(v) else float(v) for v in conf.per_class_iou()],
            "images": len(data)}


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the run directory and the model card."""

    name: str
    data: str
    out: str
    epochs: int = 100
    resolution: tuple[int, int] = (360, 480)
    crop: tuple[int, int] = (240, 320)
    scale: tuple[float, float] = (0.7, 1.4)
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    weighted_loss: bool = True
    seed: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)
    val_limit: int | None = None
    # temporal models: clips of `clip_length` frames (edge.training.clips); `videos` ("default" is
    # bikes.mp4) are pseudo-labelled by the `pseudo_labeler` checkpoint (name or path)
    clip_length: int = 1
    videos: tuple[str, ...] = ()
    pseudo_labeler: str | None = None
    video_fraction: float = 0.5
    save_best: bool = False

    def __post_init__(self) -> None:
        self.resolution = tuple(self.resolution)
        self.crop = tuple(self.crop)
        self.scale = tuple(self.scale)
        self.videos = tuple(self.videos)
        if self.videos and (self.pseudo_labeler is None or self.clip_length < 2):
            raise ValueError("videos need a pseudo_labeler and clip_length >= 2")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if any(c > r for c, r in zip(self.crop, self.resolution, strict=True)):
            self.crop = tuple(min(c, r) for c, r in zip(self.crop, self.resolution, strict=True))


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and return the run's numpy generator (all randomness flows from these)."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum 0.9) over the trainable parameters; no decay on norms/biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def poly_lr(base: float, it: int, total: int, warmup: int, power: float = 0.9) -> float:
    """Linear warm-up, then the poly schedule base * (1 - it/total)^power."""
    if it < warmup:
        return base * (it + 1) / warmup
    return base * max(0.0, 1.0 - it / total) ** power


def frame_loss(model: StreamingSegmenter, frames: torch.Tensor, labels: torch.Tensor,
               weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of per-frame logits (void ignored)."""
    return F.cross_entropy(model(frames), labels, weight=weight, ignore_index=IGNORE_INDEX)


def clip_loss(model: StreamingSegmenter, frames: torch.Tensor, labels: torch.Tensor,
              weight: torch.Tensor | None) -> torch.Tensor:
    """Mean cross-entropy over a clip (N, T, 3, H, W) stepped in order with the state carried.

    Frames whose label is all void (unlabelled) add nothing. A model may define its own
    `clip_loss(frames, labels, weight)` (e.g. StreamDEQ's random unrolling) to replace this.
    """
    custom = getattr(model, "clip_loss", None)
    if callable(custom):
        return custom(frames, labels, weight)
    state = model.initial_state()
    losses = []
    for t in range(frames.shape[1]):
        logits, state = model.step(frames[:, t], state)
        if bool((labels[:, t] != IGNORE_INDEX).any()):
            losses.append(F.cross_entropy(logits, labels[:, t], weight=weight,
                                          ignore_index=IGNORE_INDEX))
    if not losses:
        return frames.sum() * 0.0
    return torch.stack(losses).mean()


BatchSource = Callable[[np.random.Generator], Iterator[tuple[torch.Tensor, torch.Tensor]]]


def _clip_source(cfg: TrainConfig, stills: SegmentationSet, augment: Augment, out: Path,
                 log: Callable[[str], None]) -> BatchSource:
    """Clip batches from moving-camera stills and pseudo-labelled videos (cached in `out`)."""
    videos = []
    for i, spec in enumerate(cfg.videos):
        cache = out / f"pseudo_labels_{i}.npz"
        if cache.exists():
            z = np.load(cache)
            videos.append(clips.LabelledVideo(str(z["name"]), z["frames"], z["labels"]))
            continue
        log(f"pseudo-labelling {spec} with {cfg.pseudo_labeler}")
        video = clips.pseudo_label_video(spec, load_model(cfg.pseudo_labeler), cfg.resolution)
        np.savez_compressed(cache, name=video.name, frames=video.frames, labels=video.labels)
        videos.append(video)

    def source(rng: np.random.Generator):
        return clips.clip_batches(stills, cfg.batch_size, cfg.clip_length, augment, rng, videos,
                            cfg.video_fraction)
    return source


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(cfg: TrainConfig, resume: bool = False, batches: BatchSource | None = None,
          batches_per_epoch: int | None = None, progress: bool = True,
          log: Callable[[str], None] = print, until_epoch: int | None = None) -> dict[str, Any]:
    """Train `cfg.name` on CamVid; validate, checkpoint and log after every epoch.

    `batches(rng)` replaces the still batches (a temporal model passes a clip source yielding
    (N, T, 3, H, W) frames and (N, T, H, W) labels) and `batches_per_epoch` sizes its epoch.
    `until_epoch` stops early (the schedule still spans `cfg.epochs`; `resume` continues).
    Returns the last epoch's record.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path, history_path = out / "train_state.pt", out / "history.jsonl"
    rng = seed_everything(cfg.seed)
    model = build_model(cfg.name, **cfg.model_config)
    train_set = load_camvid(cfg.data, "train", cfg.resolution)
    val_set = load_camvid(cfg.data, "val", cfg.resolution, limit=cfg.val_limit)
    weight = class_weights(train_set.labels) if cfg.weighted_loss else None
    augment = Augment(crop=cfg.crop, scale=cfg.scale)
    if batches is None and cfg.clip_length > 1:
        batches = _clip_source(cfg, train_set, augment, out, log)
        batches_per_epoch = len(train_set) // cfg.batch_size
    elif batches is None:
        def batches(r: np.random.Generator):
            return still_batches(train_set, cfg.batch_size, augment, r)
        batches_per_epoch = len(train_set) // cfg.batch_size
    if not batches_per_epoch:
        raise ValueError("batches_per_epoch is required with a custom batch source")
    optimizer = make_optimizer(model, cfg)
    total_iters = cfg.epochs * batches_per_epoch
    warmup = int(cfg.warmup_epochs * batches_per_epoch)
    start_epoch, wall, best = 0, 0.0, -1.0
    if resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        changed = sorted(k for k, v in asdict(cfg).items() if st["config"].get(k) != v)
        if changed:
            log(f"note: resuming {state_path} with changed settings: {', '.join(changed)}")
        model.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])
        start_epoch, wall = st["epoch"], st["wall_s"]
        best = st.get("best_val_miou", -1.0)
        rng.bit_generator.state = st["numpy_rng"]
        torch.set_rng_state(st["torch_rng"])
        log(f"resumed from {state_path} after epoch {start_epoch}")
    elif resume:
        log(f"no {state_path} to resume from: starting afresh")
    if not resume and history_path.exists():
        history_path.unlink()
    record: dict[str, Any] = {}
    for epoch in range(start_epoch, min(cfg.epochs, until_epoch or cfg.epochs)):
        t0 = time.perf_counter()
        model.train()
        it0 = epoch * batches_per_epoch
        losses = []
        bar = tqdm(batches(rng), total=batches_per_epoch, disable=not progress,
                   desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        for i, (frames, labels) in enumerate(bar):
            lr = poly_lr(cfg.lr, it0 + i, total_iters, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_fn = clip_loss if frames.dim() == 5 else frame_loss
            loss = loss_fn(model, frames, labels, weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.2e}")
        val = evaluate_model(model, val_set)
        wall += time.perf_counter() - t0
        improved = val["miou"] > best
        best = max(best, val["miou"])
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                  "val_miou": val["miou"], "val_pixel_accuracy": val["pixel_accuracy"],
                  "val_per_class_iou": val["per_class_iou"], "lr": lr, "wall_s": wall}
        card = {"resolution": list(cfg.resolution), "epochs": epoch + 1, "seed": cfg.seed,
                "wall_time_s": round(wall, 1), "val_miou": val["miou"],
                "val_pixel_accuracy": val["pixel_accuracy"], "data": "CamVid train (367)",
                "train_config": asdict(cfg)}
        save_checkpoint(model, cfg.name, cfg.model_config, out / "model.pt.tmp", card)
        (out / "model.pt.tmp").replace(out / "model.pt")
        if cfg.save_best and improved:     # written before the state that records it as best
            save_checkpoint(model, cfg.name, cfg.model_config, out / "best.pt.tmp", card)
            (out / "best.pt.tmp").replace(out / "best.pt")
        with history_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        _atomic_save({"config": asdict(cfg), "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "wall_s": wall,
                      "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                      "best_val_miou": best},
                     state_path)
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f}  "
            f"val mIoU {100 * val['miou']:.2f}  PA {100 * val['pixel_accuracy']:.2f}  "
            f"({wall / 60:.1f} min){'  best' if improved else ''}")
    return record
