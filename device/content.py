"""Content metrics (STAC §VI) and keyframe selection from the configured fps.

Complexity c of a frame is the sum of log2|s| of its unquantised DCT coefficients; the
inter-frame difference d is the sum of absolute pixel differences between adjacent frames.
Both are averaged per second and feed the B/fps tuner. fps decides which captured frames
are keyframes: evenly spaced, deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from stac.codec.transform import rgb_to_coeffs
from stac.protocol import Content


def complexity(coefficients: Iterable[np.ndarray]) -> float:
    """c = sum of log2|s| over unquantised DCT coefficients s of all colour planes (§VI).

    Zeros: a coefficient contributes log2(1 + |s|), so zero coefficients add nothing and
    large ones add log2|s| (the size model's bits, Eq. 2); no -inf from exact zeros.
    """
    return float(sum(np.log2(1.0 + np.abs(np.asarray(c, np.float64))).sum() for c in coefficients))


def frame_complexity(frame: np.ndarray) -> float:
    """c of an RGB uint8 frame: its Y, Cb, Cr 4x4 DCT coefficients (the codec's transform)."""
    return complexity(rgb_to_coeffs(frame))


def difference(grey: np.ndarray, previous: np.ndarray | None) -> float:
    """d = sum of absolute pixel differences of two adjacent grey frames (§VI); 0 for the first."""
    if previous is None:
        return 0.0
    if grey.shape != previous.shape:
        raise ValueError(f"frame sizes differ: {grey.shape} vs {previous.shape}")
    return float(np.abs(grey.astype(np.int32) - previous.astype(np.int32)).sum())


class ContentMeter:
    """Per-frame (c, d) accumulated into per-second means (§VI: both averaged per second)."""

    def __init__(self) -> None:
        self._sums: dict[int, list[float]] = {}

    def add(self, t: float, c: float, d: float) -> None:
        """Record one frame captured at time `t` (seconds)."""
        s = self._sums.setdefault(int(math.floor(t)), [0.0, 0.0, 0])
        s[0] += c
        s[1] += d
        s[2] += 1

    def second(self, second: int) -> Content | None:
        """Mean c and d of the frames captured in [second, second + 1), or None if none."""
        s = self._sums.get(second)
        if s is None:
            return None
        return Content(second=second, c=s[0] / s[2], d=s[1] / s[2])

    def forget(self, before: int) -> None:
        """Drop the seconds before `before` (they have been reported)."""
        for k in [k for k in self._sums if k < before]:
            del self._sums[k]


def _check_rates(fps: float, source_fps: float) -> None:
    if not source_fps > 0:
        raise ValueError(f"source_fps must be > 0, got {source_fps}")
    if not 0 < fps:
        raise ValueError(f"fps must be > 0, got {fps}")


def keyframe_mask(n: int, fps: float, source_fps: float, start: int = 0) -> np.ndarray:
    """(n,) bool: which of frames 0..n-1 are keyframes at `fps` of a `source_fps` source.

    Frame `start` is the first keyframe; then j-th keyframe is frame start + ceil(j * S / f)
    (evenly spaced; every frame once fps >= source fps). Frames before `start` are False.
    """
    _check_rates(fps, source_fps)
    ratio = min(fps / source_fps, 1.0)
    i = np.arange(n) - start
    # frame i is a keyframe when floor(i * f / S) steps up at i; the epsilon absorbs float noise
    here = np.floor(i * ratio + 1e-9)
    before = np.floor((i - 1) * ratio + 1e-9)
    return (i == 0) | ((i > 0) & (here > before))


def is_keyframe(index: int, fps: float, source_fps: float, start: int = 0) -> bool:
    """Whether frame `index` is a keyframe (see `keyframe_mask`); `start` is the phase."""
    _check_rates(fps, source_fps)
    i = index - start
    ratio = min(fps / source_fps, 1.0)
    return i == 0 or (i > 0 and math.floor(i * ratio + 1e-9) > math.floor((i - 1) * ratio + 1e-9))
