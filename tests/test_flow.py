"""DIS flow and its cache: a known translation of a real CamVid frame is recovered and composed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from device.flow import DISFlow, FlowCache, FlowConfig, compose, pixel_grid, to_grey


@pytest.fixture(scope="module")
def base(dataset):
    path = sorted((dataset("camvid") / "val").glob("*.png"))[0]
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def moving(base: np.ndarray, n: int, dx: int, dy: int, h: int = 180, w: int = 240):
    """Frames whose content moves by (dx, dy) pixels per frame: crops of a real image."""
    y0, x0 = 60, 80
    return [base[y0 - t * dy:y0 - t * dy + h, x0 - t * dx:x0 - t * dx + w] for t in range(n)]


def central(a: np.ndarray, margin: int = 30) -> np.ndarray:
    return a[margin:-margin, margin:-margin]


def test_backward_flow_of_a_translation(base):
    f0, f1 = moving(base, 2, 3, -2)
    flow = DISFlow(FlowConfig(preset="medium", finest_scale=0)).backward(to_grey(f1), to_grey(f0))
    assert flow.shape == (180, 240, 2) and flow.dtype == np.float32
    assert np.median(central(flow[..., 0])) == pytest.approx(-3, abs=0.25)
    assert np.median(central(flow[..., 1])) == pytest.approx(2, abs=0.25)


def test_cache_composes_flows_back_to_the_anchor(base):
    frames = moving(base, 6, 2, 1)
    cache = FlowCache(DISFlow(FlowConfig(preset="medium", finest_scale=0)))
    for t, frame in enumerate(frames):
        cache.push(t, to_grey(frame))
        if t == 1:
            cache.set_anchor(1)
            assert np.all(cache.to_anchor() == 0) and cache.covered().all()
    flow = cache.to_anchor()  # frame 5 -> keyframe 1: 4 steps of (-2, -1)
    assert np.median(central(flow[..., 0])) == pytest.approx(-8, abs=0.5)
    assert np.median(central(flow[..., 1])) == pytest.approx(-4, abs=0.5)
    covered = cache.covered()
    assert covered[90, 120] and not covered[90, 0:4].any() and not covered[0:2, 120].any()
    # Setting the anchor later, from the cached flows, gives the same composed flow.
    cache.set_anchor(1)
    np.testing.assert_allclose(cache.to_anchor(), flow, atol=1e-5)
    np.testing.assert_allclose(cache.flow_to(1), flow, atol=1e-4)  # same path, no anchor change
    assert np.median(central(cache.flow_to(4)[..., 1])) == pytest.approx(-1, abs=0.25)
    assert np.all(cache.flow_to(5) == 0)
    cache.set_anchor(3)
    assert len(cache) == 2
    with pytest.raises(ValueError, match="no longer cached"):
        cache.flow_to(1)
    assert np.median(central(cache.to_anchor()[..., 0])) == pytest.approx(-4, abs=0.5)


def test_compose_adds_constant_flows():
    a = np.full((20, 30, 2), (1.5, -0.5), np.float32)
    b = np.full((20, 30, 2), (-4.0, 2.0), np.float32)
    np.testing.assert_allclose(compose(a, b), np.full((20, 30, 2), (-2.5, 1.5)), atol=1e-6)
    ramp = pixel_grid(20, 30)[..., :1].repeat(2, axis=-1) * 0.1  # inner flow varies with x
    out = compose(a, ramp)
    np.testing.assert_allclose(out[5, 10], a[5, 10] + 0.1 * (10 + 1.5), atol=1e-5)


def test_bad_input_is_rejected(base):
    cache = FlowCache()
    with pytest.raises(ValueError, match="no anchor"):
        cache.push(0, to_grey(base)) or cache.to_anchor()
    with pytest.raises(ValueError, match="in order"):
        cache.push(2, to_grey(base))
    with pytest.raises(ValueError, match="size changed"):
        cache.push(1, to_grey(base[:100]))
    with pytest.raises(ValueError, match="newer"):
        cache.set_anchor(5)
    with pytest.raises(ValueError, match="unknown DIS preset"):
        FlowConfig(preset="slowest")
    with pytest.raises(ValueError, match="uint8"):
        to_grey(base.astype(np.float32))
