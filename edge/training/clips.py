"""Short training clips for temporal models: synthetic motion over stills, pseudo-labelled video.

CamVid's labelled frames are stills 1 s apart, so a streaming backbone learns temporal
behaviour from (a) clips made from one still by a smooth random affine camera motion
(translation, zoom, rotation that accumulate frame by frame; every frame keeps its exact
label), and (b) windows of real video (`bikes.mp4`, the data root's `videos`) labelled by the
per-frame model's own output (pseudo-labels; low-confidence pixels are void).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from edge.models.base import IGNORE_INDEX, StreamingSegmenter
from edge.training.data import Augment, SegmentationSet, to_tensor
from stac.frames import open_source


@dataclass(frozen=True)
class Motion:
    """Per-frame bounds of the random camera motion: shift (px), zoom (relative), rotation (deg)."""

    shift: float = 6.0
    zoom: float = 0.015
    rotate: float = 0.5


def still_clip(image: np.ndarray, label: np.ndarray, length: int, augment: Augment,
               motion: Motion, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (T, h, w, 3) clip and its (T, h, w) labels: crops of one still under a moving camera.

    Frame t views the still through the affine map with centre c0 + t*v, scale s*(1+z)^t and
    rotation t*r (v, z, r drawn once per clip), so the motion is smooth like a real camera's.
    Pixels that leave the still are black with a void label.
    """
    h, w = label.shape
    ch, cw = augment.crop
    s = rng.uniform(*augment.scale)
    v = rng.uniform(-motion.shift, motion.shift, 2)
    z = rng.uniform(-motion.zoom, motion.zoom)
    r = rng.uniform(-motion.rotate, motion.rotate)
    half = np.array([cw, ch]) / (2 * s)            # half the crop, in still pixels
    lo = np.minimum(half, [w / 2, h / 2])
    hi = np.maximum(np.array([w, h]) - half, lo)
    centre = rng.uniform(lo, hi)
    flip = augment.flip and rng.random() < 0.5
    frames = np.empty((length, ch, cw, 3), np.uint8)
    labels = np.empty((length, ch, cw), np.uint8)
    for t in range(length):
        c = np.clip(centre + t * v, 0, [w - 1, h - 1])
        m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), t * r, s * (1 + z) ** t)
        m[:, 2] += np.array([cw / 2, ch / 2]) - c   # still centre c -> crop centre
        frames[t] = cv2.warpAffine(image, m, (cw, ch), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        labels[t] = cv2.warpAffine(label, m, (cw, ch), flags=cv2.INTER_NEAREST,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE_INDEX)
    if flip:
        frames, labels = frames[:, :, ::-1], labels[:, :, ::-1]
    return np.ascontiguousarray(frames), np.ascontiguousarray(labels)


@dataclass
class LabelledVideo:
    """Frames (F, H, W, 3) uint8 of a real clip with per-frame pseudo-labels (F, H, W)."""

    name: str
    frames: np.ndarray
    labels: np.ndarray


@torch.no_grad()
def pseudo_label_video(spec: str | Path, model: StreamingSegmenter,
                       resolution: tuple[int, int], max_frames: int | None = None,
                       min_confidence: float = 0.5, batch_size: int = 4) -> LabelledVideo:
    """Label every frame of a video (`"default"` = bikes.mp4) with a per-frame model's argmax.

    Pixels whose softmax confidence is below `min_confidence` become void.
    """
    h, w = resolution
    source = open_source(spec, size=(w, h), max_frames=max_frames)
    frames = np.stack([f.rgb for f in source])
    model.eval()
    labels = np.empty(frames.shape[:3], np.uint8)
    for start in range(0, len(frames), batch_size):
        probs = model(to_tensor(frames[start:start + batch_size])).softmax(1)
        conf, pred = probs.max(1)
        pred[conf < min_confidence] = IGNORE_INDEX
        labels[start:start + batch_size] = pred.numpy().astype(np.uint8)
    return LabelledVideo(name=str(getattr(source, "name", spec)), frames=frames, labels=labels)


def video_clip(video: LabelledVideo, length: int, augment: Augment,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random window of `length` consecutive frames, with one random crop and flip."""
    n, h, w = video.labels.shape
    if n < length:
        raise ValueError(f"{video.name}: {n} frames, fewer than the clip length {length}")
    t0 = int(rng.integers(0, n - length + 1))
    ch, cw = min(augment.crop[0], h), min(augment.crop[1], w)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    frames = video.frames[t0:t0 + length, y:y + ch, x:x + cw]
    labels = video.labels[t0:t0 + length, y:y + ch, x:x + cw]
    if augment.flip and rng.random() < 0.5:
        frames, labels = frames[:, :, ::-1], labels[:, :, ::-1]
    return np.ascontiguousarray(frames), np.ascontiguousarray(labels)


def clip_batches(stills: SegmentationSet, batch_size: int, length: int, augment: Augment,
                 rng: np.random.Generator, videos: Sequence[LabelledVideo] = (),
                 video_fraction: float = 0.5, motion: Motion = Motion()
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch (len(stills) // batch_size batches) of clips: frames (N, T, 3, h, w) in [0, 1]
    and labels (N, T, h, w); each clip is a real video window with probability
    `video_fraction` (when videos are given), else a moving-camera still."""
    order = rng.permutation(len(stills))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        clips = []
        for i in order[start:start + batch_size]:
            if videos and rng.random() < video_fraction:
                video = videos[int(rng.integers(0, len(videos)))]
                clips.append(video_clip(video, length, augment, rng))
            else:
                clips.append(still_clip(stills.images[i], stills.labels[i], length, augment,
                                        motion, rng))
        frames = augment.colour(to_tensor(np.stack([c[0] for c in clips])), rng)
        labels = torch.from_numpy(np.stack([c[1] for c in clips])).long()
        yield frames, labels
