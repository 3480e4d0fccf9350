"""Lagrangian region-level allocation of `stac-plus` (beyond the paper; replaces Algorithm 1).

Per region r and table level l the edge has an estimated size V(r, l) (Eq. 2's size model
of the keyframe's coefficients, in bits) and the paper's worst-case loss increment
dQ(r, l) = 0.5 sum |g_s| q^l_n (§IV-B). The allocation minimises

    J(a) = sum_r V(r, a_r) + mix_bits x #{4-neighbour pairs at different levels}
           + diff_bits x sum over 4-neighbour pairs of |a_r - a_s|
           + map_bits x #{regions off the frame's mode level}

subject to D(a) = sum_r dQ(r, a_r) <= B. The last three terms charge what mixing levels
costs and Eq. 2 does not see: neighbours at other levels hurt intra prediction (the more,
the further apart their levels), and every off-mode region costs level-map bytes. For a
multiplier lambda the per-region argmin_l V + lambda dQ is smoothed by a few checkerboard
sweeps of iterated conditional modes under the neighbour terms; lambda is bisected (in log
space) to the smallest value whose D meets B. The uniform level at budget B (the coarsest
with D <= B) is always a candidate, so the result's J is never above the uniform
assignment's.
Everything is vectorised over regions x levels (tens of small array operations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stac.codec.quant import expand_levels, region_grid_shape

BISECTION_STEPS = 24  # lambda halvings in log space (1e-9 ... 1e9 to a factor ~1.003)
ICM_SWEEPS = 2  # checkerboard sweeps of the neighbour term per lambda


@dataclass(frozen=True)
class Allocation:
    """The chosen levels (rows, cols), the uniform level at the same budget, and the
    estimated objective J, increment D and multiplier of each (lambda is nan for uniform)."""

    levels: np.ndarray
    uniform_level: int
    objective: float
    increment: float
    uniform_objective: float
    uniform_increment: float
    lam: float


def region_size_estimates(coeffs: tuple[np.ndarray, np.ndarray, np.ndarray],
                          steps: np.ndarray, height: int, width: int,
                          region_size: int = 6) -> np.ndarray:
    """(rows, cols, L): Eq. 2's size model (sum log2|s/q| over |s| >= q) of the (Y, Cb, Cr)
    coefficients (nby, nbx, 16) of every region coded at every level, in bits."""
    steps = np.asarray(steps, np.float64)
    if steps.ndim != 3 or steps.shape[1:] != (3, 16):
        raise ValueError(f"a table set is shaped (L, 3, 16), got {steps.shape}")
    grid = region_grid_shape(height, width, region_size)
    count = grid[0] * grid[1]
    ids = np.arange(count).reshape(grid)
    log_q = np.log2(steps)  # (L, 3, 16)
    out = np.zeros((count, steps.shape[0]))
    for c, plane in enumerate(coeffs):  # three planes, not a loop over blocks
        plane = np.asarray(plane, np.float64)
        if plane.ndim != 3 or plane.shape[2] != 16:
            raise ValueError(f"coefficient plane {c} must be (nby, nbx, 16), got {plane.shape}")
        region = expand_levels(ids, plane.shape[0], plane.shape[1], region_size, chroma=c > 0)
        mag = np.abs(plane).reshape(-1, 16)
        keep = mag >= steps[:, c].min(axis=0)  # below the finest step: 0 bits at every level
        rows, bins = np.nonzero(keep)
        log_s = np.log2(mag[rows, bins])
        reg = region.ravel()[rows]
        for level in range(steps.shape[0]):  # L levels, each one vectorised pass
            bits = np.maximum(log_s - log_q[level, c, bins], 0.0)
            out[:, level] += np.bincount(reg, weights=bits, minlength=count)
    return out.reshape(*grid, steps.shape[0])


def _neighbour_counts(levels: np.ndarray, num: int) -> np.ndarray:
    """(rows, cols, L): how many 4-neighbours of each region sit at each level."""
    onehot = np.eye(num, dtype=np.int32)[levels]
    counts = np.zeros_like(onehot)
    counts[1:] += onehot[:-1]
    counts[:-1] += onehot[1:]
    counts[:, 1:] += onehot[:, :-1]
    counts[:, :-1] += onehot[:, 1:]
    return counts


def _degree(shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols): the number of 4-neighbours of each region."""
    return _neighbour_counts(np.zeros(shape, np.int64), 1)[..., 0]


def _neighbour_differences(levels: np.ndarray, num: int) -> np.ndarray:
    """(rows, cols, L): sum over each region's 4-neighbours n of |l - a_n|, for every l."""
    candidates = np.arange(num)
    out = np.zeros((*levels.shape, num))
    out[1:] += np.abs(candidates - levels[:-1, :, None])
    out[:-1] += np.abs(candidates - levels[1:, :, None])
    out[:, 1:] += np.abs(candidates - levels[:, :-1, None])
    out[:, :-1] += np.abs(candidates - levels[:, 1:, None])
    return out


def level_differences(levels: np.ndarray) -> int:
    """The sum over 4-neighbour pairs of the absolute difference of their levels."""
    levels = np.asarray(levels, np.int64)
    return int(np.abs(np.diff(levels, axis=0)).sum() + np.abs(np.diff(levels, axis=1)).sum())


def mixing_cost(levels: np.ndarray, mix_bits: float, map_bits: float,
                diff_bits: float = 0.0) -> float:
    """The estimated bits mixing levels costs: `mix_bits` per 4-neighbour pair at different
    levels, `diff_bits` per level of difference within those pairs, and `map_bits` per
    region off the map's most frequent level."""
    levels = np.asarray(levels)
    pairs = np.count_nonzero(levels[1:] != levels[:-1]) + np.count_nonzero(
        levels[:, 1:] != levels[:, :-1])
    mode = np.bincount(levels.ravel()).argmax()
    cost = mix_bits * pairs + map_bits * np.count_nonzero(levels != mode)
    if diff_bits:
        cost += diff_bits * level_differences(levels)
    return float(cost)


def objective(levels: np.ndarray, size: np.ndarray, mix_bits: float, map_bits: float,
              diff_bits: float = 0.0) -> float:
    """J(a): the estimated size of the frame coded at `levels` with the mixing cost."""
    picked = np.take_along_axis(size, np.asarray(levels)[..., None], axis=2)
    return float(picked.sum()) + mixing_cost(levels, mix_bits, map_bits, diff_bits)


def increment(levels: np.ndarray, dq: np.ndarray) -> float:
    """D(a): the frame's estimated (worst-case) loss increment at `levels`."""
    return float(np.take_along_axis(dq, np.asarray(levels)[..., None], axis=2).sum())


def uniform_level(dq: np.ndarray, B: float) -> int:
    """The coarsest single level whose frame increment meets B (level 0 if none does)."""
    totals = dq.reshape(-1, dq.shape[-1]).sum(axis=0)
    ok = np.nonzero(totals <= B)[0]
    return int(ok.max()) if ok.size else 0


def _lagrangian(size: np.ndarray, dq: np.ndarray, lam: float, mix_bits: float,
                diff_bits: float = 0.0) -> np.ndarray:
    """Per-region argmin V + lam dQ, then checkerboard ICM sweeps under the neighbour terms."""
    cost = size + lam * dq
    levels = cost.argmin(axis=2)
    if (mix_bits > 0 or diff_bits > 0) and levels.size > 1:
        num = size.shape[2]
        parity = np.add.outer(np.arange(levels.shape[0]), np.arange(levels.shape[1])) % 2
        degree = _degree(levels.shape)[..., None]
        for _ in range(ICM_SWEEPS):
            for colour in (0, 1):  # regions of one colour have no neighbour of that colour
                local = cost + mix_bits * (degree - _neighbour_counts(levels, num))
                if diff_bits > 0:
                    local = local + diff_bits * _neighbour_differences(levels, num)
                levels = np.where(parity == colour, local.argmin(axis=2), levels)
    return levels


def allocate(size: np.ndarray, dq: np.ndarray, B: float, mix_bits: float = 0.0,
             map_bits: float = 0.0, diff_bits: float = 0.0) -> Allocation:
    """The Lagrangian allocation at budget B: levels minimising J subject to D <= B, never
    worse in J than the uniform level at the same budget (module docstring).

    size, dq: (rows, cols, L) estimated bits and worst-case increments per region and level
    (size non-increasing and dq non-decreasing in l, as for a table ladder)."""
    size = np.asarray(size, np.float64)
    dq = np.asarray(dq, np.float64)
    if size.shape != dq.shape or size.ndim != 3 or size.shape[2] < 1:
        raise ValueError(f"size {size.shape} and dq {dq.shape} must be equal (rows, cols, L)")
    if not B > 0:
        raise ValueError(f"B must be > 0, got {B}")
    if mix_bits < 0 or map_bits < 0 or diff_bits < 0:
        raise ValueError(f"mixing costs must be >= 0, got mix_bits {mix_bits}, map_bits "
                         f"{map_bits}, diff_bits {diff_bits}")
    u = uniform_level(dq, B)
    flat = np.full(size.shape[:2], u, np.int64)
    best = (objective(flat, size, mix_bits, map_bits, diff_bits), flat, np.nan)
    u_obj, u_inc = best[0], increment(flat, dq)
    lo, hi = -9.0, 9.0  # log10 lambda: lo too small to meet B (or as good as any), hi meets it
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        levels = _lagrangian(size, dq, 10.0 ** mid, mix_bits, diff_bits)
        if increment(levels, dq) <= B:
            hi = mid
            j = objective(levels, size, mix_bits, map_bits, diff_bits)
            if j < best[0]:
                best = (j, levels, 10.0 ** mid)
        else:
            lo = mid
    j, levels, lam = best
    return Allocation(levels=levels.astype(np.int16), uniform_level=u, objective=j,
                      increment=increment(levels, dq), uniform_objective=u_obj,
                      uniform_increment=u_inc, lam=lam)
