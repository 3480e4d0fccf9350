"""Scheme `stac-plus` end to end and its components: static scenes keep the edge's levels,
the DNN-aware residual rule keeps 7b on every region, confidence falls where propagation is
wrong, and with every component switched off the scheme is `stac` byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import build_scheme

from device.confidence import blend_levels, region_confidence
from device.dnn_residual import dnn_residual_levels, table_weights
from stac.codec.quant import default_tables, region_grid_shape, size_model
from stac.frames import open_source

W, H = 96, 72


@pytest.fixture(scope="module")
def model():
    import torch

    from edge.models.registry import build_model

    torch.manual_seed(0)
    return build_model("bisenet").eval()  # untrained: mechanics, not accuracy


@pytest.fixture(scope="module")
def clip():
    return [f.rgb for f in open_source("default", size=(W, H), max_frames=16)]


def drive(scheme, frames, delay: int = 0):
    """Device and edge in lockstep; each keyframe's feedback arrives `delay` frames later.
    Returns {keyframe index: (device l', edge levels, feedback bytes of the levels)}."""
    out, pending = {}, {}
    for i, frame in enumerate(frames):
        if i in pending:
            scheme.device.on_feedback(pending.pop(i))
        result = scheme.device.on_frame(i, i / 25, frame)
        if result.keyframe is not None:
            feedback = scheme.edge.on_keyframe(result.keyframe).feedback
            info = scheme.device.keyframes[-1]
            out[i] = (info.levels_prime.copy(), scheme.edge.last_levels.copy(),
                      len(feedback.levels), scheme.device)
            if delay == 0:
                scheme.device.on_feedback(feedback)
            else:
                pending[i + delay] = feedback
    return out


def test_static_scene_device_levels_equal_the_edge_levels(model, clip):
    import torch

    torch.manual_seed(0)
    frames = [clip[0]] * 16
    scheme = build_scheme("stac-plus", model, (W, H), B=0.05, fps=5.0, mix_bits=0.0,
                          map_bits=0.0)
    keys = drive(scheme, frames)
    assert len(np.unique(keys[0][1])) > 1  # the edge's levels are not one uniform level
    assert sorted(keys) == [0, 5, 10, 15]
    for prev, nxt in zip([0, 5, 10], [5, 10, 15], strict=True):
        # the device's l' for the next keyframe is exactly what the edge computed
        np.testing.assert_array_equal(keys[nxt][0], keys[prev][1])
        assert scheme.device.last_confidence is not None
    assert (scheme.device.last_confidence == 1.0).all()
    # ... and it is what the edge computes for that next keyframe
    np.testing.assert_array_equal(keys[15][0], keys[15][1])


@pytest.mark.slow
def test_residual_rule_respects_7b_on_every_region(model, clip):
    scheme = build_scheme("stac-plus", model, (W, H), B=0.05, fps=25 / 3)
    device = scheme.device
    seen = 0
    for i, frame in enumerate(clip):
        result = device.on_frame(i, i / 25, frame)
        if result.keyframe is None:
            continue
        device.on_feedback(scheme.edge.on_keyframe(result.keyframe).feedback)
        d = device.last_dnn_decision
        if i == 0:
            assert d is None  # the first keyframe is intra at l'
            continue
        info = device.keyframes[-1]
        assert d.residual.any()
        assert (d.size[d.residual] <= d.budget[d.residual]).all()  # 7b
        assert (d.error[d.residual] <= d.threshold[d.residual]).all()  # the weighted 7a
        assert (info.levels >= info.levels_prime).all()  # never finer than l'
        fallback = ~d.residual
        np.testing.assert_array_equal(info.levels[fallback], info.levels_prime[fallback])
        np.testing.assert_array_equal(info.levels[d.residual], d.levels[d.residual])
        seen += 1
    assert seen >= 4


@pytest.mark.parametrize("coarser_only", [True, False])
def test_dnn_residual_picks_the_smallest_feasible_level(coarser_only):
    rng = np.random.default_rng(0)
    h, w = 48, 48
    steps = default_tables().steps[18:34]
    grid = region_grid_shape(h, w)
    planes = lambda scale: (rng.standard_normal((12, 12, 16)) * scale,  # noqa: E731
                            rng.standard_normal((6, 6, 16)) * scale,
                            rng.standard_normal((6, 6, 16)) * scale)
    original = planes(30.0)
    reconstructed = tuple(p + rng.standard_normal(p.shape) * 2 for p in original)
    residual = planes(6.0)
    lp = rng.integers(0, len(steps), grid)
    budget = np.full(grid, 300.0)
    d = dnn_residual_levels(original, reconstructed, residual, steps, lp, budget, h, w,
                            coarser_only=coarser_only)
    wts = table_weights(steps)
    for r in range(grid[0]):
        for c in range(grid[1]):  # brute force over levels for each of the 4 regions
            sl, sc = slice(6 * r, 6 * r + 6), slice(3 * r, 3 * r + 3)
            cl, cc = slice(6 * c, 6 * c + 6), slice(3 * c, 3 * c + 3)
            parts = [(0, sl, cl), (1, sc, cc), (2, sc, cc)]
            thr = sum((wts[k] * np.abs(original[k][a, b] - reconstructed[k][a, b])).sum()
                      for k, a, b in parts)
            best = None
            for lev in range(lp[r, c] if coarser_only else 0, len(steps)):
                err = size = 0.0
                for k, a, b in parts:
                    q = steps[lev, k]
                    x = residual[k][a, b]
                    rec = np.sign(x) * np.floor(np.abs(x) / q + 1 / 6) * q
                    err += (wts[k] * np.abs(x - rec)).sum()
                    size += size_model(x, q).sum()
                if err <= thr and size <= budget[r, c] and (best is None or size <= best[1]):
                    best = (lev, size)
            assert d.residual[r, c] == (best is not None)
            if best is not None:
                assert d.levels[r, c] == best[0]
                assert d.size[r, c] == pytest.approx(best[1])


def test_confidence_is_one_on_a_static_scene_and_falls_where_the_warp_is_wrong(clip):
    grey = clip[0].mean(axis=2).astype(np.uint8)
    grid = region_grid_shape(H, W)
    zero = np.zeros((H, W, 2), np.float32)
    covered = np.ones((H, W), bool)
    assert (region_confidence(covered, grey, grey, zero, grid) == 1.0).all()
    moved = np.roll(grey, 9, axis=1)  # content moved, flow says it did not
    conf = region_confidence(covered, grey, moved, zero, grid)
    assert conf.mean() < 0.9
    half = covered.copy()
    half[:, : W // 2] = False
    conf = region_confidence(half, grey, grey, zero, grid)
    assert (conf[:, 0] == 0).all() and (conf[:, -1] == 1).all()
    levels = np.array([[4, 10], [20, 7]])
    np.testing.assert_array_equal(blend_levels(levels, np.ones((2, 2)), 12), levels)
    np.testing.assert_array_equal(blend_levels(levels, np.zeros((2, 2)), 12), np.full((2, 2), 12))


@pytest.mark.slow
def test_with_every_component_off_it_is_stac_byte_for_byte(model, clip):
    import torch

    payloads = {}
    for name, params in [("stac", {}), ("stac-plus", {"allocation": "closest",
                                                      "levelmap": "png", "confidence": 0,
                                                      "residual": "eq7"})]:
        torch.manual_seed(0)
        scheme = build_scheme(name, model, (W, H), B=0.05, fps=25 / 3, **params)
        sent = []
        pending = {}
        for i, frame in enumerate(clip):
            if i in pending:
                scheme.device.on_feedback(pending.pop(i))
            result = scheme.device.on_frame(i, i / 25, frame)
            if result.keyframe is not None:
                sent.append(result.keyframe.payload)
                pending[i + 2] = scheme.edge.on_keyframe(result.keyframe).feedback
        payloads[name] = sent
    assert len(payloads["stac"]) >= 5
    assert payloads["stac"] == payloads["stac-plus"]


def test_delta_level_map_is_smaller_than_png(model, clip):
    import torch

    sizes = {}
    for levelmap in ("delta", "png"):
        torch.manual_seed(0)
        scheme = build_scheme("stac-plus", model, (W, H), B=0.05, fps=25 / 3,
                              levelmap=levelmap)
        keys = drive(scheme, clip[:10], delay=2)
        sizes[levelmap] = [k[2] for k in keys.values()]
    assert sum(sizes["delta"]) < sum(sizes["png"])


def test_bad_switches_are_refused():
    from stac.schemes import SchemeError, make_scheme

    for key in ("allocation", "levelmap", "residual"):
        with pytest.raises(SchemeError, match=f"{key} must be one of"):
            make_scheme("stac-plus", {key: "nope"})
