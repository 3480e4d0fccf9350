"""DNN-aware residual levels of `stac-plus` (beyond the paper; replaces Eq. 7a's target).

Eq. 7a bounds the residual's plain coefficient error sum |s'' - s''_rec| by that of coding
the region at l'. What the segmentation loses is the gradient-weighted error
sum |g_s| |e_s| (the same first-order bound as §IV-B), so `stac-plus` picks l'' per region
as the level of smallest size (Eq. 7) with

    (a') sum_s w_n |s'' - s''_rec(l'')|  <=  sum_s w_n |s' - s'_rec(l')|
    (7b) V''_r(l'')                      <=  V'_r

with w_n the DNN's sensitivity to frequency bin n (component and frequency), and
l'' >= l': a region that falls back is coded at l' with the codec's own inter/intra
decision (not forced intra, see docs/stac.md Deviations), so a residual finer than l'
would only cost more than that fallback. The device
has no gradients; the offline tables carry them: q^l_n = 2 B_l / (M |g_n|) (§IV-A), so
w_n = 1 / q^0_n up to a constant. A per-region sensitivity scale would multiply both sides
of (a') and cancel, so no per-region feedback is needed for this rule. Regions where no
level satisfies both fall back to intra coding of the original at l' (as Eq. 7).
All regions and levels are evaluated at once (levels x coefficients, no search loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stac.codec.quant import (
    DEADZONE_INTER,
    dequantise,
    expand_levels,
    quantise,
    region_grid_shape,
    size_model,
)


@dataclass
class DnnResidual:
    """Per region (rows, cols): `levels` to encode (l'' where `residual`, else l'), and the
    weighted error, its threshold, the residual's size model and V'_r at `levels` (the
    chosen l'', or l' where the region falls back)."""

    levels: np.ndarray
    residual: np.ndarray
    error: np.ndarray
    threshold: np.ndarray
    size: np.ndarray
    budget: np.ndarray


def table_weights(steps: np.ndarray) -> np.ndarray:
    """(3, 16) sensitivity w_n of each component and frequency from the offline tables:
    1 / q^0_n (tables are q_n = 2 B / (M |g_n|), §IV-A), normalised to mean 1."""
    steps = np.asarray(steps, np.float64)
    if steps.ndim != 3 or steps.shape[1:] != (3, 16):
        raise ValueError(f"a table set is shaped (L, 3, 16), got {steps.shape}")
    w = 1.0 / steps[0]
    return w / w.mean()


def _flatten(planes: Sequence[np.ndarray], grid: tuple[int, int], region_size: int,
             name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, region, bin) of every coefficient of the three planes."""
    if len(planes) != 3:
        raise ValueError(f"{name}: expected Y, Cb, Cr planes, got {len(planes)}")
    ids = np.arange(grid[0] * grid[1]).reshape(grid)
    values, regions, bins = [], [], []
    for c, p in enumerate(planes):
        p = np.asarray(p, np.float64)
        if p.ndim != 3 or p.shape[2] != 16:
            raise ValueError(f"{name} plane {c} must be (nby, nbx, 16), got {p.shape}")
        r = expand_levels(ids, p.shape[0], p.shape[1], region_size, chroma=c > 0)
        values.append(p.ravel())
        regions.append(np.repeat(r.ravel(), 16))
        bins.append(np.tile(np.arange(16) + 16 * c, r.size))
    return np.concatenate(values), np.concatenate(regions), np.concatenate(bins)


def dnn_residual_levels(original: Sequence[np.ndarray], reconstructed: Sequence[np.ndarray],
                        residual: Sequence[np.ndarray], steps: np.ndarray, levels: np.ndarray,
                        budget: np.ndarray, height: int, width: int, region_size: int = 6,
                        weights: np.ndarray | None = None, coarser_only: bool = True,
                        deadzone: float = DEADZONE_INTER) -> DnnResidual:
    """The rule (a') with 7b for every region (module docstring).

    original, reconstructed: (Y, Cb, Cr) coefficients of the keyframe and of it coded at l'
    (`levels`); residual: those of the inter residual s''; budget: V'_r per region (7b);
    weights: (3, 16) w_n (default: `table_weights(steps)`); coarser_only: l'' >= l' (a
    residual coded finer than l' costs more than the codec's own fallback at l')."""
    steps = np.asarray(steps, np.float64)
    w = table_weights(steps) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (3, 16) or np.any(w < 0):
        raise ValueError(f"weights must be (3, 16) and >= 0, got {w.shape}")
    grid = region_grid_shape(height, width, region_size)
    lp = np.asarray(levels)
    num = steps.shape[0]
    if lp.shape != grid or lp.min() < 0 or lp.max() >= num:
        raise ValueError(f"levels l' must be {grid} in [0, {num - 1}], got {lp.shape}")
    budget = np.asarray(budget, np.float64)
    if budget.shape != grid:
        raise ValueError(f"budget V'_r {budget.shape} does not match the region grid {grid}")
    count = grid[0] * grid[1]
    s, region, bins = _flatten(original, grid, region_size, "original")
    rec, _, _ = _flatten(reconstructed, grid, region_size, "reconstructed")
    res, r_region, r_bins = _flatten(residual, grid, region_size, "residual")
    if rec.shape != s.shape or r_region.shape != region.shape:
        raise ValueError("original, reconstructed and residual planes differ in shape")
    wf = w.ravel()
    threshold = np.bincount(region, weights=wf[bins] * np.abs(s - rec), minlength=count)
    table = steps.reshape(num, 48)
    error = np.full((count, num), np.inf)
    size = np.full((count, num), np.inf)
    first = int(lp.min()) if coarser_only else 0  # finer levels are infeasible everywhere
    # a coefficient below (1 - deadzone) x its smallest step quantises to 0 at every level:
    # error |s''|, size 0; only the others need a pass per level (exact, and most of an
    # inter residual is below it)
    small = np.abs(res) < (1.0 - deadzone) * table[first:].min(axis=0)[r_bins]
    zero_error = np.bincount(r_region[small], weights=wf[r_bins[small]] * np.abs(res[small]),
                             minlength=count)
    res, r_region, r_bins = res[~small], r_region[~small], r_bins[~small]
    for level in range(first, num):  # each level one vectorised pass over the coefficients
        q = table[level, r_bins]
        err = np.abs(res - dequantise(quantise(res, q, deadzone), q))
        error[:, level] = zero_error + np.bincount(r_region, weights=wf[r_bins] * err,
                                                   minlength=count)
        size[:, level] = np.bincount(r_region, weights=size_model(res[:, None], q[:, None]),
                                     minlength=count)
    feasible = (error <= threshold[:, None]) & (size <= budget.ravel()[:, None])
    if coarser_only:
        feasible &= np.arange(num) >= lp.reshape(-1, 1)
    # Eq. 7: the smallest size among feasible levels; ties to the coarser level
    key = np.where(feasible, size, np.inf) - 1e-9 * np.arange(num)
    choice = key.argmin(axis=1)
    use = feasible.any(axis=1)
    out = np.where(use, choice, lp.ravel())
    pick = np.arange(count), out
    return DnnResidual(levels=out.reshape(grid).astype(np.int16), residual=use.reshape(grid),
                       error=error[pick].reshape(grid), threshold=threshold.reshape(grid),
                       size=size[pick].reshape(grid), budget=budget.copy())
