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
from stac.regions import REGION_SIZE, RegionGrid, grid_for


def region_of_pixels(height: int, width: int, region_size: int = REGION_SIZE,
                     grid: RegionGrid | None = None) -> np.ndarray:
    """(H, W) int: the region index (row-major, the codec's region grid) of every pixel."""
    return grid_for(height, width, region_size, grid).pixel_regions()


def level_map(levels: np.ndarray, height: int, width: int, region_size: int = REGION_SIZE,
              grid: RegionGrid | None = None) -> np.ndarray:
    """Region levels (rows, cols) -> (H, W) map of the level of each pixel's region."""
    return grid_for(height, width, region_size, grid).level_map(levels)


def middle_levels(height: int, width: int, num_levels: int, region_size: int = REGION_SIZE,
                  grid: RegionGrid | None = None) -> np.ndarray:
    """Levels of the first keyframe: every region at the middle level (§V-B)."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    return np.full(grid_for(height, width, region_size, grid).shape, num_levels // 2, np.int16)


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
                     region_size: int = REGION_SIZE, min_cover: float = 0.5,
                     grid: RegionGrid | None = None) -> np.ndarray:
    """Region levels (rows, cols) of the anchor keyframe -> those of the newest frame.

    A region is covered when at least `min_cover` of its pixels are flow-covered; it takes
    the most frequent source level among them (ties: the finer level). Uncovered regions
    take the nearest covered region's level; with none covered, the levels stay in place.
    `grid` is the stream's region grid (default: the flow's size with `region_size`).
    """
    h, w = flow.shape[:2]
    grid = grid_for(h, w, region_size, grid)
    if (grid.height, grid.width) != (h, w):
        raise ValueError(f"flow {(h, w)} does not match the region grid of "
                         f"{grid.width}x{grid.height} frames")
    levels = np.asarray(levels)
    if levels.min(initial=0) < 0 or levels.max(initial=0) > 255:
        raise ValueError("levels must lie in [0, 255]")
    source = warp_nearest(grid.level_map(levels.astype(np.uint8)), flow)
    rows, cols = levels.shape
    region = grid.pixel_regions().ravel()
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
