"""Ground truth for unlabelled video: the model's output on the raw frame, cached on disk.

STAC §VIII-A scores segmentation against the DNN's output on the raw (uncompressed) frame.
Labels are cached per (video, model, resolution, frame rate) under `$STAC_CACHE` (default
`~/.cache/stac-sim`), one PNG label map per frame, written as soon as it is computed. Keys
hash the video's bytes (or the image list) and the model's weights, so a retrained model
or an edited video never reads stale labels.

Streaming models carry state across frames: their labels come from stepping through the
raw frames in order. When a run needs a frame beyond a cached prefix, the state restarts
from the model's initial state at that frame (documented in docs/simulation.md).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from edge.models.base import StreamingSegmenter, segment
from stac.codec.labels import decode_labels, encode_labels
from stac.frames import Frame
from stac.metrics import mean_iou, pixel_accuracy


def cache_root() -> Path:
    """`$STAC_CACHE` if set, else `~/.cache/stac-sim`."""
    env = os.environ.get("STAC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "stac-sim"


def _hash_file(h: Any, path: Path, chunk: int = 1 << 20) -> None:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)


def source_fingerprint(source: Any) -> str:
    """Hash of a frame source's content: a video file's bytes, or an image folder's files."""
    h = hashlib.sha1()
    path = getattr(source, "path", None)
    if path is not None and Path(path).is_file():
        _hash_file(h, Path(path))
    else:
        for f in getattr(source, "files", ()):
            h.update(str(Path(f).name).encode())
            _hash_file(h, Path(f))
    return h.hexdigest()[:16]


def model_fingerprint(model: StreamingSegmenter) -> str:
    """Hash of a model's class, origin and weights (parameters and buffers, in name order).

    A wrapped external model (`edge.models.external`) adds its `identity` (its spec and a
    hash of its file), so two user models with equal weights never share labels.
    """
    h = hashlib.sha1(type(model).__name__.encode())
    identity = getattr(model, "identity", None)
    if identity:
        h.update(identity.encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cache_name(model_name: str) -> str:
    """A readable folder name for a model spec: a file's stem, else the spec with characters
    other than letters, digits, `_`, `.`, `-` replaced (`pkg.mod:fn` -> `pkg.mod_fn`)."""
    path = Path(model_name)
    return path.stem if path.is_file() else re.sub(r"[^\w.-]", "_", model_name)


class GroundTruth:
    """Model labels of raw frames, computed on demand and cached as PNGs per frame."""

    def __init__(self, model: StreamingSegmenter, source: Any, model_name: str,
                 cache: Path | None = None, use_cache: bool = True) -> None:
        self.model = model
        w, h = source.size
        key = (f"{getattr(source, 'name', 'video')}-{source_fingerprint(source)}",
               f"{_cache_name(model_name)}-{model_fingerprint(model)}",
               f"{w}x{h}@{source.fps:g}fps")
        self.dir = (cache or cache_root()).joinpath("gt", *key)
        self.use_cache = use_cache
        self._state: Any = model.initial_state()
        self._last: int | None = None  # index of the last frame stepped in this process
        self.hits = 0
        self.misses = 0

    def labels(self, frame: Frame) -> np.ndarray:
        """(H, W) uint8 labels of the model on `frame.rgb`, from the cache when present."""
        path = self.dir / f"{frame.index:06d}.png"
        if self.use_cache and path.is_file():
            self.hits += 1
            return decode_labels(path.read_bytes())
        if self._last is None or frame.index != self._last + 1:
            self._state = self.model.initial_state()  # no state across a gap (see module doc)
        labels, self._state = segment(self.model, frame.rgb, self._state)
        self._last = frame.index
        self.misses += 1
        if self.use_cache:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(encode_labels(labels))
            tmp.replace(path)
        return labels

    def score(self, frame: Frame, segmentation: np.ndarray | None) -> tuple[float, float]:
        """(PA, mIoU) of the shown segmentation against the raw-frame labels; NaN if none."""
        target = self.labels(frame)  # every frame, in order: streaming models keep state
        if segmentation is None:
            return float("nan"), float("nan")
        if segmentation.shape != target.shape:
            raise ValueError(f"frame {frame.index}: shown segmentation {segmentation.shape} "
                             f"vs ground truth {target.shape}")
        # The targets are the model's own argmax labels: no void, mIoU over its classes.
        classes = self.model.num_classes
        return (pixel_accuracy(segmentation, target, ignore_index=None),
                mean_iou(segmentation, target, num_classes=classes, ignore_index=None))
