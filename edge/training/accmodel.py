"""Training of AccMPEG's AccModel (`device.accmodel`) against an edge model, resumable.

Offline work on the training side (the device only runs the trained model).

Samples are CamVid stills and frames of real clips; each sample's label is the edge model's
gradient tiles (`gradient_tiles`), computed once and kept in the work folder. Only the
head trains (the extractor is frozen), so the frozen features are computed once per
session and the head learns them by binary cross-entropy against the soft labels (the
normalised tile gradients), with Adam. A checkpoint after every epoch (head, optimiser,
generator state) lets a killed run resume where it stopped; the same seed and samples give
the same weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from device.accmodel import (
    THRESHOLD,
    AccModel,
    gradient_tiles,
    mask_iou,
    pad_frame,
    quality_mask,
    to_tensor,
)


@dataclass
class Sample:
    """One training or validation frame: a unique `name`, its RGB and its label tiles."""

    name: str
    rgb: np.ndarray
    label: np.ndarray | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of the head."""

    epochs: int = 40
    lr: float = 1e-3
    batch: int = 8
    seed: int = 0


def camvid_samples(root: str | Path, split: str, limit: int | None = None) -> list[Sample]:
    """CamVid `split` stills at their native 480x360, in name order (first `limit`)."""
    from stac.frames import open_camvid

    source = open_camvid(root, split)
    files = source.files[:limit] if limit is not None else source.files
    return [Sample(f"camvid/{split}/{path.name}", frame.rgb)
            for frame, path in zip(source, files, strict=False)]


def clip_samples(spec: str, width: int = 480, every: int = 5) -> list[Sample]:
    """Every `every`-th frame of a video (`stac.frames.open_source` spec) resized to `width`
    pixels wide (height rounded to even, aspect kept)."""
    from stac.frames import open_source

    probe = open_source(spec, max_frames=1)
    w, h = probe.size
    size = (int(width), max(2, int(round(h * width / w / 2)) * 2))
    name = Path(spec).stem if spec != "default" else "bikes"
    return [Sample(f"clip/{name}/{f.index:05d}", f.rgb)
            for f in open_source(spec, size=size) if f.index % every == 0]


def label_samples(model: torch.nn.Module, samples: Sequence[Sample], cache: Path,
                  log: Callable[[str], None] = print) -> None:
    """Fill each sample's label, reading and extending the label cache `cache` (npz)."""
    known: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache) as z:
            known = {k: z[k] for k in z.files}
    fresh = 0
    for i, s in enumerate(samples):
        key = s.name.replace("/", "|")
        if key not in known:
            known[key] = gradient_tiles(model, s.rgb)
            fresh += 1
            if fresh % 50 == 0:
                _save_npz(cache, known)
                log(f"labels: {i + 1}/{len(samples)}")
        s.label = known[key]
    if fresh:
        _save_npz(cache, known)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` atomically (a killed run never leaves a half-written cache)."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _features(acc: AccModel, samples: Sequence[Sample]) -> list[torch.Tensor]:
    return [acc.features(pad_frame(to_tensor(s.rgb))) for s in samples]


def _batches(shapes: Sequence[tuple[int, ...]], batch: int,
             rng: np.random.Generator) -> list[list[int]]:
    """Shuffled index batches of samples of the same feature shape."""
    order = rng.permutation(len(shapes))
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in order:
        groups.setdefault(tuple(shapes[i]), []).append(int(i))
    out = [g[k:k + batch] for g in groups.values() for k in range(0, len(g), batch)]
    return [out[i] for i in rng.permutation(len(out))]


def train_head(acc: AccModel, samples: Sequence[Sample], config: TrainConfig,
               checkpoint: Path, log: Callable[[str], None] = print) -> list[float]:
    """Train `acc`'s head on labelled `samples`; resumes from `checkpoint` when it exists.
    Returns the mean loss of every epoch (those of earlier sessions included)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    opt = torch.optim.Adam(acc.head.parameters(), lr=config.lr)
    losses: list[float] = []
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        acc.head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        losses = list(state["losses"])
        log(f"resumed after epoch {len(losses)}")
    feats = _features(acc, samples)
    targets = [torch.from_numpy(s.label)[None, None] for s in samples]
    acc.train()
    for epoch in range(len(losses), config.epochs):
        total = 0.0
        for idx in _batches([f.shape for f in feats], config.batch, rng):
            x = torch.cat([feats[i] for i in idx])
            y = torch.cat([targets[i] for i in idx])
            loss = F.binary_cross_entropy_with_logits(acc.head(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(samples))
        tmp = checkpoint.with_name(checkpoint.name + ".tmp")
        torch.save({"head": acc.head.state_dict(), "optimizer": opt.state_dict(),
                    "rng": rng.bit_generator.state, "losses": losses}, tmp)
        tmp.replace(checkpoint)
        log(f"epoch {epoch + 1}/{config.epochs}: loss {losses[-1]:.4f}")
    acc.eval()
    return losses


@dataclass(frozen=True)
class MaskAgreement:
    """Agreement of the AccModel's masks with the thresholded gradient tiles over frames:
    mean per-frame IoU of the high-quality mask (after the 3x3 open/close) and of the bare
    thresholded scores, and the share of macroblocks the labels mark high quality."""

    frames: int
    iou_mask: float
    iou_threshold: float
    label_share: float


def mask_agreement(acc: AccModel, samples: Sequence[Sample],
                   threshold: float = THRESHOLD) -> MaskAgreement:
    """How well `acc` predicts the labelled `samples`' high-quality tiles (label > threshold)."""
    masks, raw, share = [], [], []
    for s in samples:
        scores = acc.scores(s.rgb)
        truth = s.label > threshold
        masks.append(mask_iou(quality_mask(scores, threshold), truth))
        raw.append(mask_iou(scores > threshold, truth))
        share.append(truth.mean())
    return MaskAgreement(len(samples), float(np.mean(masks)), float(np.mean(raw)),
                         float(np.mean(share)))


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (the card names the edge model's weights it learned from)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

