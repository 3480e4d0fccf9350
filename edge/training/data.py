"""Training data: CamVid stills in memory, class weights, augmentation and still batches.

Shared by the trainer (`edge.training.trainer`) and the clip makers (`edge.training.clips`),
which both import it (and not each other's internals).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from edge.models.base import IGNORE_INDEX, NUM_CLASSES
from stac.frames import open_camvid


@dataclass
class SegmentationSet:
    """Images (N, H, W, 3) uint8 RGB and labels (N, H, W) uint8 (0..10 classes, 11 void)."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)


def load_camvid(root: str | Path, split: str, resolution: tuple[int, int] | None = None,
                limit: int | None = None) -> SegmentationSet:
    """Read CamVid's `split/` images and `splitannot/` labels into memory (`stac.frames`).

    `resolution` (H, W) resizes images (area) and labels (nearest); `limit` keeps the first
    N images in name order.
    """
    size = None if resolution is None else (int(resolution[1]), int(resolution[0]))
    source = open_camvid(root, split, size=size)
    images, labels, names = [], [], []
    for frame, path in zip(source, source.files, strict=False):
        if limit is not None and len(images) >= limit:
            break
        images.append(frame.rgb)
        labels.append(frame.label)
        names.append(path.name)
    return SegmentationSet(np.stack(images), np.stack(labels), names)


def class_weights(labels: np.ndarray, c: float = 1.10) -> torch.Tensor:
    """Class weights 1 / ln(c + p_k) (ENet's scheme, softened by c), normalised to mean 1."""
    counts = np.bincount(labels.ravel(), minlength=NUM_CLASSES + 1)[:NUM_CLASSES]
    freq = counts / max(1, counts.sum())
    w = 1.0 / np.log(c + freq)
    return torch.tensor(w / w.mean(), dtype=torch.float32)


@dataclass(frozen=True)
class Augment:
    """Random scale, crop (padded with void), horizontal flip and colour jitter of stills."""

    crop: tuple[int, int] = (240, 320)
    scale: tuple[float, float] = (0.7, 1.4)
    flip: bool = True
    jitter: float = 0.25

    def sample(self, image: np.ndarray, label: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One augmented (image, label) pair of size `crop` (colour jitter is batched)."""
        s = rng.uniform(*self.scale)
        h, w = label.shape
        sh, sw = max(1, round(h * s)), max(1, round(w * s))
        img = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(label, (sw, sh), interpolation=cv2.INTER_NEAREST)
        ch, cw = self.crop
        ph, pw = max(0, ch - sh), max(0, cw - sw)
        if ph or pw:
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
            lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
        y = int(rng.integers(0, img.shape[0] - ch + 1))
        x = int(rng.integers(0, img.shape[1] - cw + 1))
        img, lab = img[y:y + ch, x:x + cw], lab[y:y + ch, x:x + cw]
        if self.flip and rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        return np.ascontiguousarray(img), np.ascontiguousarray(lab)

    def colour(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Per-sample brightness, contrast and saturation jitter of (N, ..., 3, H, W) in [0, 1]."""
        if self.jitter <= 0:
            return frames
        n = frames.shape[0]
        shape = (n,) + (1,) * (frames.dim() - 1)
        b, c, s = (torch.from_numpy(rng.uniform(1 - self.jitter, 1 + self.jitter, n))
                   .float().view(shape) for _ in range(3))
        out = frames * b
        mean = out.mean(dim=(-3, -2, -1), keepdim=True)
        out = (out - mean) * c + mean
        grey = out.mean(dim=-3, keepdim=True)
        out = (out - grey) * s + grey
        return out.clamp(0.0, 1.0)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) RGB -> float (..., 3, H, W) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return t.movedim(-1, -3).contiguous()


def still_batches(data: SegmentationSet, batch_size: int, augment: Augment,
                  rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of augmented still batches in a random order (the last partial batch dropped)."""
    order = rng.permutation(len(data))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        pairs = [augment.sample(data.images[i], data.labels[i], rng)
                 for i in order[start:start + batch_size]]
        frames = augment.colour(to_tensor(np.stack([p[0] for p in pairs])), rng)
        labels = torch.from_numpy(np.stack([p[1] for p in pairs])).long()
        yield frames, labels
