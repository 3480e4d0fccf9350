"""Propagation of the fed-back segmentation and region levels along cached flows (STAC §V-B).

Labels go to every frame at pixel level: backward warping with the nearest label.
Region levels go to each new keyframe at region level: each region of the new frame takes
the most frequent level among its flow-covered pixels' sources; regions the flow does not
cover take the level of the nearest covered region; the first keyframe, with nothing fed
back yet, uses a middle level.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from device.flow import pixel_grid

BLOCK = 4  # pixels per block side (4x4 DCT, §VII)
REGION_BLOCKS = 6  # blocks per region side (paper default 6x6)


def region_grid(height: int, width: int, region_px: int = BLOCK * REGION_BLOCKS) -> tuple[int, int]:
    """(rows, cols) of regions of `region_px` x `region_px` luma pixels; border regions are
    cut by the frame edge (§IV-B: same number of blocks except the borders)."""
    if region_px < 1:
        raise ValueError(f"region_px must be >= 1, got {region_px}")
    return -(-height // region_px), -(-width // region_px)


def region_of_pixels(height: int, width: int, region_px: int) -> np.ndarray:
    """(H, W) int: the region index (row-major) of every pixel."""
    _, cols = region_grid(height, width, region_px)
    ys = np.arange(height) // region_px
    xs = np.arange(width) // region_px
    return ys[:, None] * cols + xs[None, :]


def level_map(levels: np.ndarray, height: int, width: int, region_px: int) -> np.ndarray:
    """(H, W) per-pixel map of region levels (rows, cols) -> the level of each pixel's region."""
    rows, cols = region_grid(height, width, region_px)
    if levels.shape != (rows, cols):
        raise ValueError(f"levels {levels.shape} do not match a {height}x{width} frame "
                         f"with {region_px}-pixel regions ({rows}, {cols})")
    ys = np.arange(height) // region_px
    xs = np.arange(width) // region_px
    return levels[ys[:, None], xs[None, :]]


def middle_levels(height: int, width: int, num_levels: int,
                  region_px: int = BLOCK * REGION_BLOCKS) -> np.ndarray:
    """Levels of the first keyframe: every region at the middle level (§V-B)."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    return np.full(region_grid(height, width, region_px), num_levels // 2, np.int16)


def warp_nearest(values: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp a (H, W) map along `flow` (newest frame -> source), nearest value."""
    if values.shape != flow.shape[:2]:
        raise ValueError(f"map {values.shape} and flow {flow.shape[:2]} differ in size")
    points = pixel_grid(*values.shape) + flow
    return cv2.remap(values, points, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def propagate_labels(labels: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Segmentation (H, W) uint8 of the anchor keyframe -> that of the newest frame."""
    labels = np.asarray(labels)
    if labels.dtype != np.uint8:
        raise ValueError(f"labels must be uint8, got {labels.dtype}")
    return warp_nearest(labels, flow)


def propagate_levels(levels: np.ndarray, flow: np.ndarray, covered: np.ndarray,
                     region_px: int = BLOCK * REGION_BLOCKS,
                     min_cover: float = 0.5) -> np.ndarray:
    """Region levels (rows, cols) of the anchor keyframe -> those of the newest frame.

    A region is covered when at least `min_cover` of its pixels are flow-covered; it takes
    the most frequent source level among them (ties: the finer level). Uncovered regions
    take the nearest covered region's level; with none covered, the levels stay in place.
    """
    h, w = flow.shape[:2]
    levels = np.asarray(levels)
    if levels.min(initial=0) < 0 or levels.max(initial=0) > 255:
        raise ValueError("levels must lie in [0, 255]")
    source = warp_nearest(level_map(levels.astype(np.uint8), h, w, region_px), flow)
    rows, cols = levels.shape
    region = region_of_pixels(h, w, region_px).ravel()
    num = int(levels.max(initial=0)) + 1
    votes = np.bincount(region * num + source.ravel(), weights=covered.ravel(),
                        minlength=rows * cols * num).reshape(rows * cols, num)
    area = np.bincount(region, minlength=rows * cols)
    out = votes.argmax(axis=1).reshape(rows, cols)
    ok = (votes.sum(axis=1) >= min_cover * area).reshape(rows, cols)
    if not ok.any():
        return levels.copy()
    _, (iy, ix) = ndimage.distance_transform_edt(~ok, return_indices=True)
    return out[iy, ix].astype(levels.dtype)
