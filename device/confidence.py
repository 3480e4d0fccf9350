"""Per-region confidence in the propagated levels l' (`stac-plus`, beyond the paper).

Propagation (§V-B) carries the edge's levels for the anchor keyframe along the flows; it
is unreliable where the flow does not cover a region, where the warped anchor does not
match the new frame (occlusions, wrong flow, new content, which grows with the distance
to the anchor), and after a shot cut. The confidence of region r is

    c_r = (covered fraction of r) x exp(-(mean |grey_t - warp(grey_anchor)| over r) / scale)

in [0, 1] (1 on a static scene), and the levels used are the blend
round(c l' + (1 - c) u) with u the uniform level at the edge's budget (fed back with the
levels); a shot cut gives c = 0 everywhere (the agent's rule).
"""

from __future__ import annotations

import numpy as np

from device.propagation import region_of_pixels, warp_nearest

PHOTOMETRIC_SCALE = 12.0  # grey levels (0-255) of mean warp error at which c falls to 1/e


def region_confidence(covered: np.ndarray, anchor_grey: np.ndarray, grey: np.ndarray,
                      flow: np.ndarray, grid: tuple[int, int], region_size: int = 6,
                      scale: float = PHOTOMETRIC_SCALE) -> np.ndarray:
    """(rows, cols) confidence in [0, 1] of the levels propagated from the anchor frame
    (`anchor_grey`) to the newest frame (`grey`) along `flow` (newest -> anchor)."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    grey = np.asarray(grey)
    if np.shape(anchor_grey) != grey.shape or np.shape(covered) != grey.shape:
        raise ValueError(f"anchor {np.shape(anchor_grey)}, covered {np.shape(covered)} and "
                         f"frame {grey.shape} differ in size")
    h, w = grey.shape
    warped = warp_nearest(np.asarray(anchor_grey), flow)
    error = np.abs(grey.astype(np.float64) - warped.astype(np.float64))
    region = region_of_pixels(h, w, region_size).ravel()
    count = grid[0] * grid[1]
    if region.max() >= count:
        raise ValueError(f"region grid {grid} does not cover a {h}x{w} frame")
    cov = np.asarray(covered, bool).ravel()
    area = np.bincount(region, minlength=count)
    inside = np.bincount(region, weights=cov, minlength=count)
    err = np.bincount(region, weights=error.ravel() * cov, minlength=count)
    mean_err = np.divide(err, inside, out=np.zeros(count), where=inside > 0)
    conf = (inside / np.maximum(area, 1)) * np.exp(-mean_err / scale)
    return conf.reshape(grid)


def blend_levels(levels: np.ndarray, confidence: np.ndarray, fallback: int) -> np.ndarray:
    """round(c l' + (1 - c) u) per region: full confidence keeps l', none gives u."""
    levels = np.asarray(levels)
    confidence = np.asarray(confidence, np.float64)
    if confidence.shape != levels.shape:
        raise ValueError(f"confidence {confidence.shape} and levels {levels.shape} differ")
    c = np.clip(confidence, 0.0, 1.0)
    return np.rint(c * levels + (1.0 - c) * fallback).astype(levels.dtype)
