"""Algorithm 1 of STAC (§IV-B), vectorised: one quantisation-table level per region.

For region R_r and level l the worst-case loss increment is
dQ_max(r, l) = sum_{s in R_r} |g_s| q^l_{n(s)} / 2; the region gets the level whose dQ_max
is closest to its share of the bound, B_r = B x (pixels in R_r) / (pixels in the frame).
All regions and levels are evaluated at once: sum |g| per (region, component, frequency),
then one contraction with the table set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stac.regions import REGION_SIZE, RegionGrid, grid_for


def region_gradient_sums(grads: Sequence[np.ndarray], height: int, width: int,
                         region_size: int = REGION_SIZE,
                         grid: RegionGrid | None = None) -> np.ndarray:
    """(rows, cols, 3, 16): sum of |g_s| per region, component (Y, Cb, Cr) and frequency."""
    if len(grads) != 3:
        raise ValueError(f"expected Y, Cb, Cr gradient arrays, got {len(grads)}")
    grid = grid_for(height, width, region_size, grid)
    rows, cols = grid.shape
    out = np.empty((grid.count, 3, 16))
    for c, g in enumerate(grads):  # three planes, not a loop over blocks
        g = np.asarray(g)
        if g.ndim != 3 or g.shape[2] != 16:
            raise ValueError(f"gradient plane {c} must be shaped (nby, nbx, 16), got {g.shape}")
        region = grid.block_regions(g.shape[0], g.shape[1], chroma=c > 0)
        keys = (region[:, :, None] * 16 + np.arange(16)).ravel()
        out[:, c] = np.bincount(keys, weights=np.abs(g).ravel(),
                                minlength=out.shape[0] * 16).reshape(-1, 16)
    return out.reshape(rows, cols, 3, 16)


def worst_case_increments(sums: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(rows, cols, L): dQ_max(r, l) = sum |g_s| q^l_n / 2 from per-region sums (Alg. 1 l. 8)."""
    steps = np.asarray(steps, np.float64)
    if steps.ndim != 3 or steps.shape[1:] != (3, 16):
        raise ValueError(f"a table set is shaped (L, 3, 16), got {steps.shape}")
    return 0.5 * np.einsum("rkcn,lcn->rkl", sums, steps)


def region_budgets(B: float, height: int, width: int, region_size: int = REGION_SIZE,
                   grid: RegionGrid | None = None) -> np.ndarray:
    """(rows, cols): B_r = B x (pixels in region) / (pixels in frame) (§IV-B)."""
    grid = grid_for(height, width, region_size, grid)
    return B * grid.pixel_counts() / (grid.height * grid.width)


def select_levels(grads: Sequence[np.ndarray], steps: np.ndarray, B: float, height: int,
                  width: int, region_size: int = REGION_SIZE,
                  grid: RegionGrid | None = None) -> np.ndarray:
    """Algorithm 1: (rows, cols) int levels, per region argmin_l |dQ_max(r, l) - B_r|.

    Ties go to the lower (finer) level, as the paper's strict `<` in line 9 keeps the first.
    `grid` is the stream's region grid (default: `height` x `width` with `region_size`).
    """
    if not B > 0:
        raise ValueError(f"B must be > 0, got {B}")
    grid = grid_for(height, width, region_size, grid)
    if (grid.height, grid.width) != (height, width):
        raise ValueError(f"a {width}x{height} frame does not match the region grid of "
                         f"{grid.width}x{grid.height} frames")
    dq = worst_case_increments(region_gradient_sums(grads, height, width, grid=grid), steps)
    budget = region_budgets(B, height, width, grid=grid)
    return np.abs(dq - budget[:, :, None]).argmin(axis=2).astype(np.int16)
