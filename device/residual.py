"""Residual levels l'' per region (STAC §V-C, Eq. 7, 7a, 7b), vectorised over regions.

A keyframe's regions carry the propagated levels l' (for coding the original frame). For
the inter/intra residual s'' of each region STAC picks the level l'' of smallest size
(Eq. 7) such that (7a) its quantisation error stays within that of coding the original
region at l', and (7b) its size stays below the size V'_r of the original region at l'.
Where no level qualifies, the region falls back to intra coding of the original at l'.

Both constraints live in the frequency domain (no iDCT in the search): the 7a threshold of
a region is sum |s' - s'_rec| where s'_rec are the DCT coefficients of the frame
reconstructed at l' (the residual regenerated from the reconstruction differs from the
true one by exactly that, the DCT being linear). The search per region starts at its l''
of the last keyframe and walks up (coarser) while 7a holds, or down until it holds (one
numba loop over regions; each 7a sum adds its terms in the coefficients' order).

V'_r (7b) is given by the caller (`budget`: the device passes the size model per region of
the keyframe coded on its own at l', i.e. of the coefficients the codec's intra path
codes) or defaults to the size model of the raw coefficients s' at l' (footnote 4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from stac.codec.quant import (
    DEADZONE_INTER,
    size_model,
)
from stac.regions import REGION_SIZE, RegionGrid


def size_bits(coeffs: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per-coefficient size model of Eq. 7 (the codec's `size_model`): log2|s / q| for
    |s| >= q, 0 for coefficients that quantise to zero."""
    return size_model(coeffs[..., None], steps[..., None])


@dataclass
class ResidualLevels:
    """The decision per region (rows, cols): `residual` True codes the residual at `levels`;
    False falls back to intra coding of the original at l' (`levels` then holds l').

    `error`, `threshold`, `size`, `budget` are the 7a and 7b quantities at the chosen l''.
    """

    levels: np.ndarray
    residual: np.ndarray
    search: np.ndarray  # l'' found by the search (also where it fell back): the next start
    error: np.ndarray
    threshold: np.ndarray
    size: np.ndarray
    budget: np.ndarray


class _Flat:
    """All coefficients of the three planes as flat vectors grouped by region (contiguous),
    with their region and (component, frequency) bin indices. Built once per region grid
    and plane shapes (`_flat`)."""

    def __init__(self, shapes: Sequence[tuple[int, int, int]], grid: RegionGrid):
        regions, bins = [], []
        self.shapes = [tuple(s) for s in shapes]
        self.block_region = []  # per plane: the region of every block, raster order
        for c, (nby, nbx, _) in enumerate(self.shapes):
            r = grid.block_regions(nby, nbx, chroma=c > 0)
            self.block_region.append(np.ascontiguousarray(r.ravel(), dtype=np.int64))
            regions.append(np.repeat(r.ravel(), 16))
            bins.append(np.tile(np.arange(16) + 16 * c, r.size))
        region = np.concatenate(regions)
        self._order = np.argsort(region, kind="stable")
        self.region = region[self._order]
        self.bin = np.concatenate(bins)[self._order]
        self.count = grid.count
        self.sizes = np.bincount(self.region, minlength=self.count)
        self.starts = np.cumsum(self.sizes) - self.sizes

    def vector(self, planes: Sequence[np.ndarray], name: str) -> np.ndarray:
        """The coefficients of the three planes in this order (float64)."""
        if [np.shape(p) for p in planes] != self.shapes:
            raise ValueError(f"{name} planes {[np.shape(p) for p in planes]} do not match "
                             f"{self.shapes}")
        flat = [np.ascontiguousarray(p, np.float64).ravel() for p in planes]
        out = np.empty(self._order.size)
        _gather(*flat, self._order, out)
        return out

    def region_sums(self, kernel, inputs: Sequence[Sequence[np.ndarray]], *args) -> np.ndarray:
        """Per region, the sum of `kernel`'s per-coefficient terms of `inputs` (each a
        (Y, Cb, Cr) triple), visited plane by plane in coefficient order: within each region
        the very order of this grouping, so the sums equal `per_region` of the terms in it,
        bit for bit."""
        out = np.zeros(self.count)
        for c, regions in enumerate(self.block_region):
            kernel(*(np.ascontiguousarray(planes[c], np.float64).reshape(-1)
                     for planes in inputs), regions, c, *args, out)
        return out

    def per_region(self, values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        region = self.region if where is None else self.region[where]
        return np.bincount(region, weights=values, minlength=self.count)


def residual_levels(original: Sequence[np.ndarray], reconstructed: Sequence[np.ndarray],
                    residual: Sequence[np.ndarray], steps: np.ndarray, levels: np.ndarray,
                    start: np.ndarray | None = None, height: int | None = None,
                    width: int | None = None, region_size: int = REGION_SIZE,
                    deadzone: float = DEADZONE_INTER,
                    budget: np.ndarray | None = None,
                    grid: RegionGrid | None = None) -> ResidualLevels:
    """Eq. 7 with 7a and 7b for every region at once.

    original: (Y, Cb, Cr) DCT coefficients s' of the keyframe; reconstructed: those of the
    keyframe reconstructed after coding it at l' (`levels`); residual: coefficients s'' of
    the inter/intra residual; steps: table set (L, 3, 16); start: l'' of the last keyframe
    (default l'); budget: V'_r per region (default: size model of s' at l'); grid: the
    stream's region grid (default: `height` x `width`, which default to the padded luma
    plane, with regions of `region_size` blocks).
    """
    steps = np.asarray(steps, np.float64)
    if steps.ndim != 3 or steps.shape[1:] != (3, 16):
        raise ValueError(f"a table set is shaped (L, 3, 16), got {steps.shape}")
    num = steps.shape[0]
    if grid is None:
        nby, nbx = np.shape(original[0])[:2]
        grid = RegionGrid(4 * nbx if width is None else width,
                          4 * nby if height is None else height, region_size)
    shapes = [np.shape(p) for p in original]
    for c, shape in enumerate(shapes):
        if len(shape) != 3 or shape[2] != 16:
            raise ValueError(f"coefficient plane {c} must be (nby, nbx, 16), got {shape}")
    flat = grid.memo(("eq7", tuple(shapes)), lambda: _Flat(shapes, grid))
    levels = np.asarray(levels)
    if levels.shape != grid.shape or levels.min() < 0 or levels.max() >= num:
        raise ValueError(f"levels l' must be {grid.shape} in [0, {num - 1}], got {levels.shape}")
    start = levels if start is None else np.asarray(start)
    if start.shape != grid.shape:
        raise ValueError(f"start levels {start.shape} do not match the region grid "
                         f"{grid.shape}")
    for name, planes in (("original", original), ("reconstructed", reconstructed)):
        if [np.shape(p) for p in planes] != flat.shapes:
            raise ValueError(f"{name} planes {[np.shape(p) for p in planes]} do not match "
                             f"{flat.shapes}")
    res = flat.vector(residual, "residual")
    table = steps.reshape(num, 48)
    lp = levels.ravel().astype(np.int64)

    # 7a right-hand side: sum |s' - s'_rec| per region
    threshold = flat.region_sums(_plane_l1, (original, reconstructed))
    if budget is None:  # V'_r (7b): the size model of the original coefficients at l'
        budget = flat.region_sums(_plane_size, (original,), table, lp)
    else:
        budget = np.asarray(budget, np.float64).ravel()
        if budget.size != flat.count:
            raise ValueError(f"budget V'_r must have one value per region {grid.shape}")

    level, ok, err = _search(res, flat.starts, flat.sizes, flat.bin, table,
                             np.clip(start.ravel().astype(np.int64), 0, num - 1), threshold,
                             float(deadzone))
    size = _region_size(res, flat.starts, flat.sizes, flat.bin, table, level)
    use = ok & (size <= budget)
    out = np.where(use, level, lp)
    shape = grid.shape
    return ResidualLevels(levels=out.reshape(shape).astype(np.int16),
                          residual=use.reshape(shape), search=level.reshape(shape).astype(np.int16),
                          error=err.reshape(shape), threshold=threshold.reshape(shape),
                          size=size.reshape(shape), budget=budget.reshape(shape))


@njit(cache=True)
def _gather(p0, p1, p2, order, out):
    """out[j] = (p0, p1, p2 concatenated)[order[j]] without the concatenation."""
    n0 = p0.size
    n1 = n0 + p1.size
    for j in range(order.size):
        i = order[j]
        if i < n0:
            out[j] = p0[i]
        elif i < n1:
            out[j] = p1[i - n0]
        else:
            out[j] = p2[i - n1]


@njit(cache=True)
def _plane_l1(a, b, block_region, component, out):
    """out[region of block] += |a - b| over one plane's coefficients, in their order."""
    for k in range(block_region.size):
        g = block_region[k]
        total = out[g]
        for n in range(16 * k, 16 * k + 16):
            total += abs(a[n] - b[n])
        out[g] = total


@njit(cache=True)
def _plane_size(x, block_region, component, table, level, out):
    """out[region g of block] += the size model (`size_bits`) of one plane's coefficients
    at table level[g], in their order (coefficients below their step add nothing)."""
    for k in range(block_region.size):
        g = block_region[k]
        steps = table[level[g]]
        total = out[g]
        for n in range(16):
            ratio = abs(x[16 * k + n]) / steps[16 * component + n]
            if ratio >= 1.0:
                total += math.log2(ratio)
        out[g] = total


@njit(cache=True)
def _region_size(x, starts, sizes, bins, table, level):
    """Per region g, the size model (`size_bits`) of its coefficients at table level[g],
    added in their order: log2(|x| / q) for |x| / q >= 1 (the others add nothing)."""
    out = np.zeros(starts.size)
    for g in range(starts.size):
        steps = table[level[g]]
        total = 0.0
        for i in range(starts[g], starts[g] + sizes[g]):
            ratio = abs(x[i]) / steps[bins[i]]
            if ratio >= 1.0:
                total += math.log2(ratio)
        out[g] = total
    return out


@njit(cache=True)
def _error(res, start, size, bins, steps, deadzone, limit):
    """7a left-hand side of one region at one level: sum |s'' - deq(quant(s''))| over its
    coefficients, term for term as `quant.quantise` and `quant.dequantise` compute it.
    Stops early with a partial sum once it exceeds `limit` (the terms are >= 0, so the
    rounded partial sums never decrease: the comparison with `limit` is unchanged)."""
    total = 0.0
    for i in range(start, start + size):
        r = res[i]
        q = steps[bins[i]]
        level = np.sign(r) * np.floor(np.abs(r) / q + deadzone)
        total += np.abs(r - level * q)
        if total > limit:
            return total
    return total


@njit(cache=True)
def _search(res, starts, sizes, bins, table, level0, threshold, deadzone):
    """Eq. 7 under 7a per region: from `level0`, walk coarser while the error stays within
    the threshold, or finer until it does. Returns (level, 7a holds, error at level)."""
    num = table.shape[0]
    count = starts.shape[0]
    level = level0.copy()
    ok = np.zeros(count, dtype=np.bool_)
    err = np.zeros(count)
    for g in range(count):
        a, n, lv, thr = starts[g], sizes[g], level[g], threshold[g]
        e = _error(res, a, n, bins, table[lv], deadzone, thr)
        if e <= thr:
            ok[g] = True
            while lv < num - 1:
                e_up = _error(res, a, n, bins, table[lv + 1], deadzone, thr)
                if e_up > thr:
                    break
                lv += 1
                e = e_up
        else:
            while lv > 0 and not ok[g]:
                lv -= 1
                e = _error(res, a, n, bins, table[lv], deadzone, thr)
                ok[g] = e <= thr
            if not ok[g]:  # 7a fails at every level: the full error at the finest
                e = _error(res, a, n, bins, table[lv], deadzone, np.inf)
        level[g] = lv
        err[g] = e
    return level, ok, err
