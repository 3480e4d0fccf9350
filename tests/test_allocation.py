"""The Lagrangian allocation of `stac-plus` (edge/allocation.py): never worse than the uniform
assignment at the same budget, departs from uniform only when it pays, and its size model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.allocation import (
    _lagrangian,
    _neighbour_differences,
    allocate,
    increment,
    level_differences,
    mixing_cost,
    objective,
    region_size_estimates,
    uniform_level,
)
from edge.selection import region_gradient_sums, worst_case_increments
from stac.codec.quant import default_tables, size_model


def _problem(seed: int, rows: int, cols: int, levels: int):
    """Random gradient maps over a frame and a size model of random coefficients: the
    (size, dq) pair of a real table ladder (size falls, dq grows with the level)."""
    rng = np.random.default_rng(seed)
    h, w = 24 * rows, 24 * cols
    scale = rng.lognormal(0.0, 1.5, size=(rows, cols))  # sensitivity varies over regions
    big = np.kron(scale, np.ones((6, 6)))
    grads = [rng.standard_normal((h // 4, w // 4, 16)) * big[..., None],
             rng.standard_normal((h // 8, w // 8, 16)) * big[::2, ::2, None] * 0.3,
             rng.standard_normal((h // 8, w // 8, 16)) * big[::2, ::2, None] * 0.3]
    texture = np.kron(rng.lognormal(2.0, 1.0, size=(rows, cols)), np.ones((6, 6)))
    coeffs = (rng.standard_normal((h // 4, w // 4, 16)) * texture[..., None],
              rng.standard_normal((h // 8, w // 8, 16)) * texture[::2, ::2, None],
              rng.standard_normal((h // 8, w // 8, 16)) * texture[::2, ::2, None])
    steps = default_tables().steps[10:10 + levels]
    dq = worst_case_increments(region_gradient_sums(grads, h, w), steps)
    size = region_size_estimates(coeffs, steps, h, w)
    return size, dq


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 6), cols=st.integers(1, 8),
       levels=st.integers(2, 24), budget=st.floats(0.05, 3.0),
       mix_bits=st.sampled_from([0.0, 4.0, 50.0]), map_bits=st.sampled_from([0.0, 3.0]),
       diff_bits=st.sampled_from([0.0, 0.5, 2.0, 20.0]))
def test_never_worse_than_uniform_at_the_same_budget(seed, rows, cols, levels, budget,
                                                     mix_bits, map_bits, diff_bits):
    size, dq = _problem(seed, rows, cols, levels)
    B = budget * dq.sum(axis=(0, 1)).mean()  # budgets across the ladder's range
    alloc = allocate(size, dq, B, mix_bits=mix_bits, map_bits=map_bits, diff_bits=diff_bits)
    u = uniform_level(dq, B)
    flat = np.full(size.shape[:2], u)
    charges = (mix_bits, map_bits, diff_bits)
    assert alloc.objective <= objective(flat, size, *charges) + 1e-9
    assert alloc.objective == pytest.approx(objective(alloc.levels, size, *charges))
    if increment(flat, dq) <= B:  # uniform feasible: so is the allocation
        assert increment(alloc.levels, dq) <= B + 1e-9
    assert alloc.levels.shape == size.shape[:2]
    assert alloc.levels.min() >= 0 and alloc.levels.max() < levels


def test_departs_from_uniform_when_it_pays_and_not_when_mixing_costs_too_much():
    size, dq = _problem(3, 5, 8, 20)
    B = dq[..., 10].sum()
    free = allocate(size, dq, B)
    assert free.objective < free.uniform_objective * 0.97  # heterogeneous sensitivity pays
    assert len(np.unique(free.levels)) > 1
    dear = allocate(size, dq, B, mix_bits=1e6, map_bits=1e6)
    assert (dear.levels == dear.uniform_level).all()
    steep = allocate(size, dq, B, diff_bits=1e6)  # any level step costs more than it saves
    assert (steep.levels == steep.uniform_level).all()


def test_level_difference_charge_prefers_small_steps_between_neighbours():
    size, dq = _problem(3, 5, 8, 20)
    B = dq[..., 10].sum()
    free = allocate(size, dq, B)
    charged = allocate(size, dq, B, diff_bits=2.0)
    assert len(np.unique(charged.levels)) > 1  # a moderate charge still lets levels vary
    assert level_differences(charged.levels) < level_differences(free.levels)
    assert increment(charged.levels, dq) <= B + 1e-9


def test_neighbour_differences_are_the_local_level_difference_charge():
    rng = np.random.default_rng(5)
    levels = rng.integers(0, 7, size=(4, 5))
    diffs = _neighbour_differences(levels, 7)
    for r, c, cand in [(0, 0, 3), (2, 3, 0), (3, 4, 6), (1, 2, 2)]:
        moved = levels.copy()
        moved[r, c] = cand
        # the charge of region (r, c) at level cand is what its pairs add to the total
        base = levels.copy()
        base[r, c] = 0
        near = [(r + dr, c + dc) for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
                if 0 <= r + dr < 4 and 0 <= c + dc < 5]
        assert diffs[r, c, cand] == sum(abs(cand - levels[p]) for p in near)
        assert level_differences(moved) - diffs[r, c, cand] == level_differences(
            base) - diffs[r, c, 0]


def test_icm_never_raises_the_local_objective_with_the_difference_charge():
    size, dq = _problem(7, 6, 7, 16)
    lam = 10.0
    charges = (0.0, 0.0, 3.0)
    start = (size + lam * dq).argmin(axis=2)
    smoothed = _lagrangian(size, dq, lam, 0.0, 3.0)

    def lagrangian_cost(levels):
        return objective(levels, size, *charges) + lam * increment(levels, dq)

    assert lagrangian_cost(smoothed) <= lagrangian_cost(start) + 1e-9


def test_uniform_level_is_the_coarsest_within_budget():
    size, dq = _problem(1, 3, 4, 12)
    totals = dq.sum(axis=(0, 1))
    assert uniform_level(dq, totals[5] + 1e-9) == 5
    assert uniform_level(dq, totals[0] * 0.5) == 0  # nothing meets B: the finest level


def test_mixing_cost_counts_pairs_and_off_mode_regions():
    levels = np.array([[1, 1, 2], [1, 3, 1]])
    # pairs: (1,2) (2,1) vertical; (1,3), (1,3) horizontal ... counted explicitly:
    horizontal = 1 + 2  # row 0: 1|1 same, 1|2 diff; row 1: 1|3 diff, 3|1 diff
    vertical = 1 + 1  # col 1: 1/3 diff; col 2: 2/1 diff; col 0: same
    assert mixing_cost(levels, 1.0, 0.0) == horizontal + vertical
    assert mixing_cost(levels, 0.0, 1.0) == 2  # two regions off the mode level 1
    # level differences: horizontal 0+1 and 2+2, vertical 0, 2, 1
    assert level_differences(levels) == 1 + 4 + 3
    assert mixing_cost(levels, 0.0, 0.0, diff_bits=0.5) == 4.0
    assert mixing_cost(levels, 1.0, 1.0, 1.0) == horizontal + vertical + 2 + 8


def test_size_estimates_are_the_codec_size_model_per_region():
    rng = np.random.default_rng(0)
    h, w = 48, 72
    coeffs = (rng.standard_normal((12, 18, 16)) * 40, rng.standard_normal((6, 9, 16)) * 20,
              rng.standard_normal((6, 9, 16)) * 20)
    steps = default_tables().steps[20:26]
    est = region_size_estimates(coeffs, steps, h, w)
    assert est.shape == (2, 3, 6)
    level = 3
    y = size_model(coeffs[0][:6, 6:12], steps[level, 0]).sum()  # region (0, 1), luma
    cb = size_model(coeffs[1][:3, 3:6], steps[level, 1]).sum()
    cr = size_model(coeffs[2][:3, 3:6], steps[level, 2]).sum()
    assert est[0, 1, level] == pytest.approx(y + cb + cr)
    assert (np.diff(est, axis=2) <= 1e-12).all()  # coarser levels never cost more


def test_bad_inputs_are_refused():
    size, dq = _problem(0, 2, 2, 4)
    with pytest.raises(ValueError, match="B must be > 0"):
        allocate(size, dq, 0.0)
    with pytest.raises(ValueError, match="must be equal"):
        allocate(size[..., :3], dq, 1.0)
    with pytest.raises(ValueError, match="diff_bits -1"):
        allocate(size, dq, 1.0, diff_bits=-1.0)
