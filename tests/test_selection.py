"""Algorithm 1 (STAC §IV-B) against a brute-force loop, and the offline tables (§IV-A)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.selection import region_budgets, region_gradient_sums, select_levels


def brute_force(grads, steps, B, height, width, region_size):
    """Algorithm 1 literally: loops over regions, levels and every coefficient."""
    side = 4 * region_size
    rows, cols = -(-height // side), -(-width // side)
    out = np.zeros((rows, cols), int)
    for rr in range(rows):
        for rc in range(cols):
            rows_in = [y for y in range(height) if y // side == rr]
            cols_in = [x for x in range(width) if x // side == rc]
            pixels = len(rows_in) * len(cols_in)
            budget = B * pixels / (height * width)
            best = np.inf
            for level in range(steps.shape[0]):
                dq = 0.0
                for comp, g in enumerate(grads):
                    scale = 2 if comp else 1
                    for by in range(g.shape[0]):
                        for bx in range(g.shape[1]):
                            ry = min(by * scale // region_size, rows - 1)
                            rx = min(bx * scale // region_size, cols - 1)
                            if (ry, rx) != (rr, rc):
                                continue
                            for n in range(16):
                                dq += abs(g[by, bx, n]) * steps[level, comp, n] / 2
                if abs(dq - budget) < best:
                    out[rr, rc], best = level, abs(dq - budget)
    return out


@pytest.mark.parametrize("height,width,region_size", [(52, 70, 2), (50, 100, 6), (48, 48, 3)])
def test_algorithm1_matches_brute_force(height, width, region_size):
    rng = np.random.default_rng(height)
    nby, nbx = -(-height // 8) * 2, -(-width // 8) * 2  # the codec pads luma to 8 pixels
    # heavy-tailed gradients, as DNN gradients are, so regions differ a lot
    grads = [rng.standard_cauchy((nby, nbx, 16)) * 1e-5,
             rng.standard_cauchy((nby // 2, nbx // 2, 16)) * 1e-5,
             rng.standard_cauchy((nby // 2, nbx // 2, 16)) * 1e-5]
    steps = np.sort(rng.uniform(1, 50, (10, 3, 16)), axis=0)
    steps *= np.geomspace(1, 40, 10)[:, None, None]
    total = region_gradient_sums(grads, height, width, region_size)
    assert total.sum() == pytest.approx(sum(np.abs(g).sum() for g in grads))
    typical = total.sum() * np.median(steps) / 2  # B at which a middle level fits on average
    for B in (typical / 30, typical, typical * 30):
        levels = select_levels(grads, steps, B, height, width, region_size)
        np.testing.assert_array_equal(levels, brute_force(grads, steps, B, height, width,
                                                          region_size))
    assert len(np.unique(select_levels(grads, steps, typical, height, width, region_size))) > 2


def test_more_sensitive_regions_get_finer_levels():
    steps = np.geomspace(1, 100, 16)[:, None, None] * np.ones((16, 3, 16))
    grads = [np.full((12, 12, 16), 1e-6), np.full((6, 6, 16), 1e-6), np.full((6, 6, 16), 1e-6)]
    grads[0][:6, :6] *= 50  # top-left region is very sensitive
    levels = select_levels(grads, steps, 0.1, 48, 48, 6)
    assert levels[0, 0] < levels[1, 1] and levels[0, 1] == levels[1, 0] == levels[1, 1]
    # A looser bound B never selects finer levels.
    assert np.all(select_levels(grads, steps, 1.0, 48, 48, 6) > levels)


def test_budgets_split_B_by_pixels():
    b = region_budgets(1.0, 50, 30, 6)
    assert b.shape == (3, 2) and b.sum() == pytest.approx(1.0)
    assert b[0, 0] == pytest.approx(24 * 24 / 1500) and b[2, 1] == pytest.approx(2 * 6 / 1500)


def test_bad_input():
    with pytest.raises(ValueError, match="B must be > 0"):
        select_levels([np.zeros((2, 2, 16))] * 3, np.ones((2, 3, 16)), 0, 8, 8)
    with pytest.raises(ValueError, match="shaped"):
        select_levels([np.zeros((2, 2, 16))] * 3, np.ones((2, 16)), 1, 8, 8)


def test_tables_follow_the_mean_gradients():
    from edge.tables import GradientAverager, TableSpec, build_tables

    rng = np.random.default_rng(3)
    avg = GradientAverager()
    frames = [[rng.normal(size=(6, 8, 16)) * np.linspace(2, 0.1, 16), rng.normal(size=(3, 4, 16)),
               rng.normal(size=(3, 4, 16))] for _ in range(3)]
    for g in frames:
        avg.add(g)
    mean = avg.mean()
    np.testing.assert_allclose(mean[0], np.mean([np.abs(f[0]).reshape(-1, 16) for f in frames],
                                                axis=(0, 1)))
    assert avg.coefficients == (48 + 12 + 12) * 16
    spec = TableSpec(levels=10, q_fine=1, q_coarse=100, q_min=0.01, q_max=1e6)
    t = build_tables(mean, avg.coefficients, spec)
    assert t.steps.shape == (10, 3, 16) and np.all(np.diff(t.steps, axis=0) > 0)
    # q_n^l = 2 B_l / (M |g_n|): q * g is the same across bins within a level
    qg = t.steps * mean[None]
    expected = 2 * t.bounds[:, None, None] / avg.coefficients * np.ones_like(qg)
    np.testing.assert_allclose(qg, expected)
    np.testing.assert_allclose(np.exp(np.log(t.steps).mean(axis=(1, 2)))[[0, -1]], [1, 100])
    np.testing.assert_allclose(np.diff(np.log(t.bounds)), np.log(100) / 9)
    # the most sensitive bin gets the finest step
    assert t.steps[0, 0].argmin() == np.argmax(mean[0])
    clipped = build_tables(mean, avg.coefficients, TableSpec(levels=4, q_min=2, q_max=50))
    assert clipped.steps.min() == 2 and clipped.steps.max() == 50


def test_selection_with_mean_gradients_picks_the_level_of_B():
    from edge.tables import build_tables

    mean = np.abs(np.random.default_rng(4).normal(size=(3, 16))) + 0.1
    h, w = 48, 72  # whole regions, no padding
    grads = [np.broadcast_to(mean[0], (12, 18, 16)), np.broadcast_to(mean[1], (6, 9, 16)),
             np.broadcast_to(mean[2], (6, 9, 16))]
    t = build_tables(mean, coefficients=h * w * 3 // 2)
    for level in (0, 7, 20, 31):
        levels = select_levels(grads, t.steps, t.bounds[level], h, w)
        assert np.all(levels == level)


def test_table_files_round_trip(tmp_path):
    from edge.tables import TableFileError, build_tables, load_tables, save_tables

    t = build_tables(np.full((3, 16), 1e-5), 1000)
    t.meta["model"] = "bisenet"
    path = save_tables(t, tmp_path / "tables" / "bisenet")
    assert path.suffix == ".npz" and path.with_suffix(".json").exists()
    back = load_tables(path)
    np.testing.assert_array_equal(back.steps, t.steps)
    assert back.coefficients == 1000 and back.meta["model"] == "bisenet"
    assert back.table_set().levels == 32
    with pytest.raises(TableFileError, match="no such table file"):
        load_tables(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(TableFileError, match="not a STAC table file"):
        load_tables(tmp_path / "bad.npz")


@pytest.mark.slow
def test_tables_build_command(tmp_path, dataset):
    from edge.models.registry import build_model, save_checkpoint
    from edge.tables import load_tables
    from stac.cli import main

    ckpt = tmp_path / "bisenet.pt"
    save_checkpoint(build_model("bisenet"), "bisenet", {}, ckpt)  # untrained: mechanics only
    out = tmp_path / "t"
    code = main(["tables", "build", "--model", str(ckpt), "--data",
                 str(dataset("camvid") / "val"), "--frames", "2", "--size", "64x48",
                 "--levels", "6", "-o", str(out)])
    assert code == 0
    t = load_tables(out)
    assert t.steps.shape == (6, 3, 16) and t.meta["frames"] == 2 and t.meta["width"] == 64
    assert t.coefficients == 64 * 48 * 3 // 2
    assert np.all(np.diff(t.steps, axis=0) >= 0) and t.table_set().levels == 6
    assert main(["tables", "build", "--model", str(tmp_path / "nope.pt"), "--data",
                 str(dataset("camvid") / "val"), "-o", str(out)]) == 2
