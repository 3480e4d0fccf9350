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

from stac.codec.quant import size_model
from stac.codec.transform import rgb_to_coeffs
from stac.protocol import Content


def complexity(coefficients: Iterable[np.ndarray]) -> float:
    """c = sum of log2|s| over unquantised DCT coefficients s of all colour planes (§VI).

    Zeros: as in the codec's size model (Eq. 2) at step 1, coefficients with |s| < 1 add
    nothing (no -inf from exact zeros, no negative bits).
    """
    return float(sum(size_model(np.asarray(c, np.float64).reshape(-1, 1), 1.0).sum()
                     for c in coefficients))


def frame_complexity(frame: np.ndarray) -> float:
    """c of an RGB uint8 frame: its Y, Cb, Cr 4x4 DCT coefficients (the codec's transform)."""
    return complexity(rgb_to_coeffs(frame))


#: what the device reports as a second's content: the means over the second (§VI), or one
#: frame pre-encoded at the step, as CASVA estimates content (§VIII-E, tuner casva-content)
CONTENT_SOURCES = ("second", "frame")


def frame_content(second: int, frame: np.ndarray, d: float) -> Content:
    """CASVA-style content of `second` from one frame (§VIII-E): c of `frame` pre-encoded
    (its DCT and the size model at step 1) and the difference d of that frame alone."""
    return Content(second=second, c=frame_complexity(frame), d=float(d))


def difference(grey: np.ndarray, previous: np.ndarray | None) -> float:
    """d = sum of absolute pixel differences of two adjacent grey frames (§VI); 0 for the first."""
    if previous is None:
        return 0.0
    if grey.shape != previous.shape:
        raise ValueError(f"frame sizes differ: {grey.shape} vs {previous.shape}")
    return float(np.abs(grey.astype(np.int32) - previous.astype(np.int32)).sum())


class ContentMeter:
    """Per-frame c and d accumulated into per-second means (§VI: both averaged per second).

    c may be recorded on fewer frames than d (the device computes c from the coefficients
    it already has for keyframes, §VI "without increasing much overhead").
    """

    def __init__(self) -> None:
        self._sums: dict[int, list[float]] = {}  # second -> [sum c, count c, sum d, count d]

    def add(self, t: float, c: float | None = None, d: float | None = None) -> None:
        """Record the metrics of one frame captured at time `t` (seconds)."""
        s = self._sums.setdefault(int(math.floor(t)), [0.0, 0, 0.0, 0])
        if c is not None:
            s[0] += c
            s[1] += 1
        if d is not None:
            s[2] += d
            s[3] += 1

    def second(self, second: int) -> Content | None:
        """Mean c and d over the frames of [second, second + 1); None if nothing was recorded
        (a metric with no frame in that second is NaN)."""
        s = self._sums.get(second)
        if s is None:
            return None
        mean = lambda total, n: total / n if n else math.nan  # noqa: E731
        return Content(second=second, c=mean(s[0], s[1]), d=mean(s[2], s[3]))

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
