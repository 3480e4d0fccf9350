"""Residual levels (STAC §V-C, Eq. 7, 7a, 7b) on real CamVid frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from device.flow import DISFlow, FlowConfig, pixel_grid, to_grey
from device.residual import residual_levels, size_bits
from stac.codec.quant import DEADZONE_INTER, DEADZONE_INTRA, default_tables, dequantise, quantise
from stac.codec.transform import rgb_to_coeffs

H, W, R = 96, 120, 6  # 4 x 5 regions


@pytest.fixture(scope="module")
def frames(dataset):
    paths = sorted((dataset("camvid") / "val").glob("0016E5_*.png"))[10:12]
    rgb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)[200:200 + H, 100:100 + W]
           for p in paths]
    return [np.ascontiguousarray(f) for f in rgb]


def region_masks(shapes, grid):
    """Brute-force membership: for each region, a boolean mask per plane."""
    masks = {}
    for rr in range(grid[0]):
        for rc in range(grid[1]):
            per_plane = []
            for c, (nby, nbx, _) in enumerate(shapes):
                scale = 2 if c else 1
                m = np.zeros((nby, nbx, 16), bool)
                for by in range(nby):
                    for bx in range(nbx):
                        ry = min(by * scale // R, grid[0] - 1)
                        rx = min(bx * scale // R, grid[1] - 1)
                        m[by, bx] = (ry, rx) == (rr, rc)
                per_plane.append(m)
            masks[rr, rc] = per_plane
    return masks


def reference(original, rec, res, steps, lp, start):
    """Per-region loops: 7a/7b quantities for every level and the up/down search."""
    grid = lp.shape
    masks = region_masks([p.shape for p in original], grid)
    out = {}
    for (rr, rc), m in masks.items():
        def q_at(level, c):
            return np.broadcast_to(steps[level, c], original[c].shape)

        def err(level, m=m):
            return sum(np.abs(r - dequantise(quantise(r, q_at(level, c), DEADZONE_INTER),
                                             q_at(level, c)))[m[c]].sum()
                       for c, r in enumerate(res))

        thr = sum(np.abs(original[c] - rec[c])[m[c]].sum() for c in range(3))
        budget = sum(size_bits(original[c], q_at(lp[rr, rc], c))[m[c]].sum() for c in range(3))
        level = int(start[rr, rc])
        if err(level) <= thr:
            ok = True
            while level + 1 < steps.shape[0] and err(level + 1) <= thr:
                level += 1
        else:
            ok = False
            while level > 0 and not ok:
                level -= 1
                ok = err(level) <= thr
        size = sum(size_bits(res[c], q_at(level, c))[m[c]].sum() for c in range(3))
        out[rr, rc] = (level, ok and size <= budget, err(level), thr, size, budget)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_eq7_selection_respects_7a_and_7b_on_every_region(frames, seed):
    rng = np.random.default_rng(seed)
    steps = default_tables().steps
    cur, prev = (rgb_to_coeffs(f) for f in frames)
    grid = (4, 5)
    lp = rng.integers(8, 40, size=grid)
    start = rng.integers(0, 52, size=grid)
    prediction = [p.copy() for p in prev]
    prediction[0][:6, :6] += rng.normal(0, 400, prediction[0][:6, :6].shape)  # a bad prediction
    res = [c - p for c, p in zip(cur, prediction, strict=True)]
    q = [steps[np.repeat(np.repeat(lp, R, 0), R, 1)[:24:s, :30:s], c] for c, s in
         zip(range(3), (1, 2, 2), strict=True)]
    rec = [dequantise(quantise(cur[c], q[c], DEADZONE_INTRA), q[c]) for c in range(3)]
    out = residual_levels(cur, rec, res, steps, lp, start=start, height=H, width=W)
    assert out.levels.shape == grid and out.residual.dtype == bool
    ref = reference(cur, rec, res, steps, lp, start)
    for (rr, rc), (level, use, err, thr, size, budget) in ref.items():
        assert out.search[rr, rc] == level
        assert out.residual[rr, rc] == use
        assert out.levels[rr, rc] == (level if use else lp[rr, rc])
        np.testing.assert_allclose([out.error[rr, rc], out.threshold[rr, rc], out.size[rr, rc],
                                    out.budget[rr, rc]], [err, thr, size, budget], rtol=1e-9)
    # 7a and 7b hold on every region that codes its residual
    chosen = out.residual
    assert np.all(out.error[chosen] <= out.threshold[chosen])
    assert np.all(out.size[chosen] <= out.budget[chosen])
    assert 3 <= chosen.sum() <= 17  # both branches occur with a zero-motion prediction
    assert not chosen[0, 0]  # the region with the broken prediction falls back to intra at l'


def test_motion_compensated_prediction_makes_most_regions_residual(frames):
    flow = DISFlow(FlowConfig(preset="medium", finest_scale=0)).backward(
        to_grey(frames[1]), to_grey(frames[0]))
    warped = cv2.remap(frames[0], pixel_grid(H, W) + flow, None, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    steps = default_tables().steps
    cur, still, moved = rgb_to_coeffs(frames[1]), rgb_to_coeffs(frames[0]), rgb_to_coeffs(warped)
    lp = np.full((4, 5), 28)
    rec = [dequantise(quantise(cur[c], steps[28, c], DEADZONE_INTRA), steps[28, c])
           for c in range(3)]
    plain = residual_levels(cur, rec, [a - b for a, b in zip(cur, still, strict=True)], steps,
                            lp, height=H, width=W)
    compensated = residual_levels(cur, rec, [a - b for a, b in zip(cur, moved, strict=True)],
                                  steps, lp, height=H, width=W)
    assert compensated.residual.sum() > plain.residual.sum()
    assert compensated.residual.sum() >= 12
    chosen = compensated.residual
    assert np.all(compensated.error[chosen] <= compensated.threshold[chosen])
    assert np.all(compensated.size[chosen] <= compensated.budget[chosen])


def test_static_regions_go_to_the_coarsest_level(frames):
    steps = default_tables().steps
    cur = rgb_to_coeffs(frames[0])
    lp = np.full((4, 5), 20)
    q = [steps[20, c] for c in range(3)]
    rec = [dequantise(quantise(cur[c], q[c], DEADZONE_INTRA), q[c]) for c in range(3)]
    zero = [np.zeros_like(c) for c in cur]  # perfect prediction: nothing to code
    out = residual_levels(cur, rec, zero, steps, lp, height=H, width=W)
    assert np.all(out.residual) and np.all(out.levels == 51) and np.all(out.size == 0)
    # Lossless original coding leaves no error budget: only an exact residual qualifies.
    noisy = [c + 1.0 for c in cur]
    lossless = residual_levels(cur, cur, noisy, steps, lp, height=H, width=W)
    assert not lossless.residual.any() and np.all(lossless.levels == 20)


def test_bad_input(frames):
    cur = rgb_to_coeffs(frames[0])
    steps = default_tables().steps
    with pytest.raises(ValueError, match="levels l'"):
        residual_levels(cur, cur, cur, steps, np.full((3, 5), 1), height=H, width=W)
    with pytest.raises(ValueError, match="do not match"):
        residual_levels(cur, cur, [c[:-1] for c in cur], steps, np.full((4, 5), 1), height=H,
                        width=W)


def test_7b_budget_given_per_region(frames):
    steps = default_tables().steps
    cur, prev = (rgb_to_coeffs(f) for f in frames)
    lp = np.full((4, 5), 24)
    q = [steps[24, c] for c in range(3)]
    rec = [dequantise(quantise(cur[c], q[c], DEADZONE_INTRA), q[c]) for c in range(3)]
    res = [a - b for a, b in zip(cur, prev, strict=True)]
    free = residual_levels(cur, rec, res, steps, lp, height=H, width=W,
                           budget=np.full((4, 5), np.inf))
    assert np.all(free.budget == np.inf)
    assert np.array_equal(free.residual, free.error <= free.threshold)  # only 7a left
    none = residual_levels(cur, rec, res, steps, lp, height=H, width=W,
                           budget=np.zeros((4, 5)))
    assert np.array_equal(none.residual, free.residual & (free.size == 0))
    assert np.all(none.levels[~none.residual] == 24)
    with pytest.raises(ValueError, match="one value per region"):
        residual_levels(cur, rec, res, steps, lp, height=H, width=W, budget=np.zeros(3))


def test_device_eq7_uses_the_codecs_residual_and_intra_coded_size(frames, dataset,
                                                                   monkeypatch):
    """§V-C: the keyframe coded on its own at l' gives both constraints (its reconstruction
    7a, its size V'_r 7b), and s'' is the residual the encoder will code (its own motion
    search), not a DIS-warped estimate."""
    import device.stac_agent as agent
    from device.propagation import middle_levels
    from stac.codec.encoder import Encoder
    from stac.codec.transform import planes_to_coeffs
    from stac.protocol import Config

    paths = sorted((dataset("camvid") / "val").glob("0016E5_*.png"))[10:13]
    clip = [np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                                 [200:200 + H, 100:100 + W]) for p in paths]
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return residual_levels(*args, **kwargs)

    monkeypatch.setattr(agent, "residual_levels", spy)
    tables = default_tables()
    device = agent.StacDevice(tables, Config.of({"B": 1.0, "fps": 30.0}),
                              source_fps=30.0, frame_size=(W, H))
    mirror = Encoder(W, H, tables=tables)  # replays the device's encodes
    for i, frame in enumerate(clip):
        if i:
            # no feedback in this test: l' is the middle level everywhere
            expected_res = mirror.inter_residual_coeffs(frame, middle_levels(H, W, tables.levels))
        out = device.on_frame(i, i / 30, frame)
        assert out.keyframe is not None
        info = device.keyframes[-1]
        if i:
            (original, rec, res, steps, lp), kwargs = calls[-1]
            alone = Encoder(W, H, tables=tables).encode(frame, info.levels_prime, intra=True)
            np.testing.assert_array_equal(kwargs["budget"], alone.stats.region_size_model)
            for a, b in zip(rec, planes_to_coeffs(*alone.planes), strict=True):
                np.testing.assert_array_equal(a, b)
            for a, b in zip(res, expected_res, strict=True):
                np.testing.assert_array_equal(a, b)
            d = device.last_decision
            assert np.all(d.size[d.residual] <= alone.stats.region_size_model[d.residual])
        mirror.encode(frame, info.levels)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="residual must be"):
        agent.StacDevice(tables, Config.of({"B": 1.0, "fps": 30.0}), source_fps=30.0,
                         frame_size=(W, H), residual="warp")


def numpy_walk(res, region, bins, table, level, threshold, deadzone):
    """The vectorised numpy search the numba `_search` replaced (issue 15), kept as the
    reference: all regions step together, each 7a sum a `bincount` in coefficient order."""
    num, count = table.shape[0], threshold.size

    def error(lv):
        q = table[lv[region], bins]
        e = np.abs(res - dequantise(quantise(res, q, deadzone), q))
        return np.bincount(region, weights=e, minlength=count)

    level = level.copy()
    ok = error(level) <= threshold
    up = ok & (level < num - 1)
    while up.any():
        good = up & (error(level + up) <= threshold)
        level += good
        up = good & (level < num - 1)
    down = ~ok & (level > 0)
    while down.any():
        level -= down
        found = down & (error(level) <= threshold)
        ok |= found
        down &= ~found & (level > 0)
    return level, ok, error(level)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numba_search_is_bit_identical_to_the_numpy_search(seed):
    """Same levels, same 7a outcome and the very same error sums (==, not approximately) as
    the numpy walk, on real frames of the default clip with random l' and starts."""
    from device.residual import _Flat, _search
    from stac.frames import default_clip_path, open_video
    from stac.regions import RegionGrid

    rng = np.random.default_rng(seed)
    frames = [f.rgb for f in open_video(default_clip_path(), size=(160, 120), max_frames=4)]
    cur, prev = rgb_to_coeffs(frames[3]), rgb_to_coeffs(frames[0])
    steps = default_tables().steps
    flat = _Flat([c.shape for c in cur], RegionGrid(160, 120, R))
    res = flat.vector([a - b for a, b in zip(cur, prev, strict=True)], "residual")
    table = steps.reshape(steps.shape[0], 48)
    threshold = rng.uniform(0, 3, flat.count) * flat.per_region(np.abs(res))
    start = rng.integers(0, steps.shape[0], flat.count)
    want = numpy_walk(res, flat.region, flat.bin, table, start, threshold, DEADZONE_INTER)
    got = _search(res, flat.starts, flat.sizes, flat.bin, table, start, threshold,
                  DEADZONE_INTER)
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)
    assert 0 < want[1].sum() < flat.count  # both outcomes of 7a occur


@pytest.mark.parametrize("seed", [0, 1])
def test_region_sums_are_bit_identical_to_the_numpy_formulas(seed):
    """The numba per-region sums (7a threshold, 7b budget and size) equal the numpy
    formulas they replaced (issue 15: a `bincount` over the coefficients grouped by region,
    the size model by `size_bits`) exactly, on real frames with random l', odd sizes."""
    from device.residual import _Flat
    from stac.codec.encoder import Encoder
    from stac.frames import default_clip_path, open_video
    from stac.regions import RegionGrid

    rng = np.random.default_rng(seed)
    w, h = 164, 118  # neither a multiple of the region nor of the macroblock size
    frames = [f.rgb for f in open_video(default_clip_path(), size=(w, h), max_frames=4)]
    tables = default_tables()
    grid = RegionGrid(w, h, R)
    lp = rng.integers(0, tables.levels, grid.shape)
    enc = Encoder(w, h, tables=tables, region_size=R)
    enc.encode(frames[0], lp)
    original = rgb_to_coeffs(frames[3])
    rec = rgb_to_coeffs(Encoder(w, h, tables=tables, region_size=R)
                        .encode(frames[3], lp, intra=True).reconstruction)
    res = enc.inter_residual_coeffs(frames[3], lp)
    got = residual_levels(original, rec, res, tables.steps, lp, grid=grid)
    flat = _Flat([c.shape for c in original], grid)
    s, r, x = (flat.vector(p, "p") for p in (original, rec, res))
    table = tables.steps.reshape(tables.levels, 48)
    threshold = flat.per_region(np.abs(s - r))
    budget = flat.per_region(size_bits(s, table[lp.ravel()[flat.region], flat.bin]))
    size = flat.per_region(size_bits(x, table[got.search.ravel()[flat.region], flat.bin]))
    assert np.array_equal(got.threshold.ravel(), threshold)
    assert np.array_equal(got.budget.ravel(), budget)
    assert np.array_equal(got.size.ravel(), size)
    assert got.residual.any() and size.min() < size.max()
