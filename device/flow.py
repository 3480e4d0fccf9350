"""DIS optical flow between adjacent raw frames, and its cache since the newest feedback.

STAC §V-A/§V-B: dense flow (DIS, coarse-to-fine) is computed only between adjacent raw
frames; the flows since the newest fed-back keyframe k are cached and composed so that
every pixel of the current frame t can be mapped back to its position in frame k
(backward flow), which is what the propagation of labels and region levels needs.

Flow convention (OpenCV's): a backward flow ``f`` of frame t (shape (H, W, 2), x then y)
says that pixel p of frame t sits at ``p + f(p)`` in the earlier frame.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass(frozen=True)
class FlowConfig:
    """DIS settings: OpenCV preset and the finest pyramid scale (0 = full resolution).

    A larger `finest_scale` stops the coarse-to-fine refinement earlier: faster, coarser
    (§V-A: DIS lets the device trade accuracy for compute). None keeps the preset's value.
    """

    preset: str = "ultrafast"
    finest_scale: int | None = 2

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown DIS preset {self.preset!r}; known: {', '.join(PRESETS)}")
        if self.finest_scale is not None and not 0 <= self.finest_scale <= 10:
            raise ValueError(f"finest_scale must be in [0, 10], got {self.finest_scale}")


def to_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W) uint8 luminance of an RGB uint8 frame (the plane DIS runs on)."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        grey = frame
    elif frame.ndim == 3 and frame.shape[2] == 3:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(f"expected an RGB (H, W, 3) or grey (H, W) frame, got {frame.shape}")
    if grey.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {grey.dtype}")
    return np.ascontiguousarray(grey)


class DISFlow:
    """OpenCV DIS optical flow with a fixed configuration (one instance per stream)."""

    def __init__(self, config: FlowConfig | None = None) -> None:
        self.config = config or FlowConfig()
        self._dis = cv2.DISOpticalFlow_create(PRESETS[self.config.preset])
        if self.config.finest_scale is not None:
            self._dis.setFinestScale(self.config.finest_scale)

    def backward(self, grey: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Backward flow (H, W, 2) float32 of `grey` (frame t) to `previous` (frame t-1)."""
        if grey.shape != previous.shape:
            raise ValueError(f"frame sizes differ: {grey.shape} vs {previous.shape}")
        return self._dis.calc(grey, previous, None)


def pixel_grid(height: int, width: int) -> np.ndarray:
    """(H, W, 2) float32 pixel coordinates (x, y): the identity map for cv2.remap."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.ascontiguousarray(np.stack([xs, ys], axis=-1))


def inside(points: np.ndarray) -> np.ndarray:
    """(H, W) bool: which mapped points (x, y) fall inside an (H, W) frame."""
    h, w = points.shape[:2]
    x, y = points[..., 0], points[..., 1]
    return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


def compose(outer: np.ndarray, inner: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Backward flow a->c from `outer` (a->b, at pixels of a) and `inner` (b->c, pixels of b).

    (a->c)(p) = outer(p) + inner(p + outer(p)), `inner` sampled bilinearly, edges replicated.
    """
    if grid is None:
        grid = pixel_grid(*outer.shape[:2])
    points = grid + outer
    sampled = cv2.remap(inner, points, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return outer + sampled


class FlowCache:
    """Adjacent-frame backward flows since the anchor (the newest fed-back keyframe).

    `push` each captured frame; `set_anchor(k)` when the edge's result for keyframe k
    arrives. `to_anchor()` is the composed backward flow from the newest frame to k and
    `covered()` says which pixels of the newest frame have a flow path inside every frame
    back to k. Composition is incremental: one remap per frame, plus one per cached frame
    when a new anchor is set. At most `max_frames` flows are kept.
    """

    def __init__(self, flow: DISFlow | None = None, max_frames: int = 256) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.flow = flow or DISFlow()
        self.max_frames = max_frames
        self._flows: OrderedDict[int, np.ndarray] = OrderedDict()  # index t -> flow t -> t-1
        self._grey: np.ndarray | None = None
        self._index: int | None = None
        self._grid: np.ndarray | None = None
        self.anchor: int | None = None
        self._to_anchor: np.ndarray | None = None
        self._covered: np.ndarray | None = None

    @property
    def index(self) -> int | None:
        """Index of the newest pushed frame."""
        return self._index

    def push(self, index: int, grey: np.ndarray) -> bool:
        """Add frame `index`; computes the flow to the previous frame. True if a flow ran."""
        grey = to_grey(grey)
        if self._index is not None and index != self._index + 1:
            raise ValueError(f"frames must be pushed in order: got {index} after {self._index}")
        ran = False
        if self._grey is not None and self._grey.shape != grey.shape:
            raise ValueError(f"frame size changed: {self._grey.shape} -> {grey.shape}")
        if self._grey is not None:
            flow = self.flow.backward(grey, self._grey)
            self._flows[index] = flow
            while len(self._flows) > self.max_frames:
                self._flows.popitem(last=False)
            if self.anchor is not None:
                self._extend(flow)
            ran = True
        else:
            self._grid = pixel_grid(*grey.shape)
        self._grey, self._index = grey, index
        return ran

    def _extend(self, flow: np.ndarray) -> None:
        """Prepend one adjacent flow (newest frame -> previous) to the composed flow."""
        points = self._grid + flow
        if self._to_anchor is None:
            self._to_anchor, self._covered = flow.copy(), inside(points)
            return
        covered = cv2.remap(self._covered.astype(np.uint8), points, None, cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        self._covered = inside(points) & covered.astype(bool)
        self._to_anchor = compose(flow, self._to_anchor, self._grid)

    def set_anchor(self, index: int) -> None:
        """Make keyframe `index` the propagation source; drop flows from before it."""
        if self._index is None:
            raise ValueError("no frame pushed yet")
        if index > self._index:
            raise ValueError(f"anchor {index} is newer than the newest frame {self._index}")
        if index < self._index and index + 1 not in self._flows:
            raise ValueError(f"flows back to frame {index} are no longer cached "
                             f"(max_frames={self.max_frames})")
        self.anchor = index
        for t in [t for t in self._flows if t <= index]:
            del self._flows[t]
        self._to_anchor = self._covered = None
        for t in range(index + 1, self._index + 1):
            self._extend(self._flows[t])

    def flow_to(self, index: int) -> np.ndarray:
        """Composed backward flow from the newest frame to any cached earlier frame `index`
        (e.g. the previous keyframe, for motion-compensated prediction): one remap per frame."""
        if self._index is None or not index <= self._index:
            raise ValueError(f"frame {index} is not at or before the newest frame {self._index}")
        if index < self._index and index + 1 not in self._flows:
            raise ValueError(f"flows back to frame {index} are no longer cached")
        out = np.zeros(self._grid.shape, np.float32)
        for t in range(index + 1, self._index + 1):  # F(t -> k) = f_t then F(t-1 -> k)
            out = compose(self._flows[t], out, self._grid) if t > index + 1 else self._flows[t]
        return out

    def to_anchor(self) -> np.ndarray:
        """Composed backward flow (H, W, 2) from the newest frame to the anchor."""
        if self.anchor is None:
            raise ValueError("no anchor: no keyframe result has been fed back yet")
        if self._to_anchor is None:  # the newest frame is the anchor itself
            return np.zeros(self._grid.shape, np.float32)
        return self._to_anchor

    def covered(self) -> np.ndarray:
        """(H, W) bool: pixels of the newest frame whose flow path stays inside the frames."""
        if self.anchor is None:
            raise ValueError("no anchor: no keyframe result has been fed back yet")
        if self._covered is None:
            return np.ones(self._grid.shape[:2], bool)
        return self._covered

    def __len__(self) -> int:
        return len(self._flows)
