"""Content metrics c, d (STAC §VI) and keyframe selection from fps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from device.content import (
    ContentMeter,
    complexity,
    difference,
    frame_complexity,
    is_keyframe,
    keyframe_mask,
)


def test_complexity_sums_log2_of_coefficients_and_ignores_zeros():
    y = np.array([[0.0, 4.0], [-8.0, 0.5]])
    cb = np.array([1.0, 0.0, -2.0])
    assert complexity([y, cb]) == pytest.approx(2 + 3 + 0 + 0 + 1)
    assert complexity([np.zeros((4, 4))]) == 0.0
    assert complexity([np.array([1024.0, -0.99])]) == pytest.approx(10.0)


def test_frame_complexity_ranks_texture_above_flat(dataset):
    path = sorted((dataset("camvid") / "val").glob("*.png"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert frame_complexity(np.full((64, 64, 3), 128, np.uint8)) == 0.0  # all coefficients 0
    smooth = cv2.GaussianBlur(rgb, (0, 0), 4)
    assert frame_complexity(rgb) > 1.2 * frame_complexity(smooth) > 0


def test_difference_is_the_sum_of_absolute_pixel_differences():
    a = np.array([[10, 200], [0, 255]], np.uint8)
    b = np.array([[12, 190], [0, 0]], np.uint8)
    assert difference(a, b) == 2 + 10 + 0 + 255
    assert difference(a, None) == 0.0
    with pytest.raises(ValueError, match="sizes differ"):
        difference(a, b[:1])


def test_meter_averages_per_second():
    meter = ContentMeter()
    for t, c, d in [(0.0, 1, 10), (0.5, 3, 20), (1.0, 5, 0), (1.96, 7, 4)]:
        meter.add(t, c, d)
    s0, s1 = meter.second(0), meter.second(1)
    assert (s0.second, s0.c, s0.d) == (0, 2.0, 15.0)
    assert (s1.c, s1.d) == (6.0, 2.0)
    assert meter.second(2) is None
    meter.add(2.5, d=3.0)
    assert meter.second(2).d == 3.0 and np.isnan(meter.second(2).c)
    meter.add(2.7, c=8.0)
    assert meter.second(2).c == 8.0 and meter.second(2).d == 3.0
    meter.forget(1)
    assert meter.second(0) is None and meter.second(1) is not None


@pytest.mark.parametrize("fps,source,expected", [
    (25, 25, 25), (17, 25, 17), (5, 25, 5), (10, 30, 10), (2, 17, 2), (30, 25, 25), (7.5, 30, 7.5),
])
def test_keyframes_per_second_are_evenly_spaced(fps, source, expected):
    n = int(source * 4)
    mask = keyframe_mask(n, fps, source)
    assert mask[0]
    assert mask.sum() == pytest.approx(expected * 4, abs=1)
    gaps = np.diff(np.flatnonzero(mask))
    assert gaps.max() - gaps.min() <= 1  # evenly spaced
    assert [is_keyframe(i, fps, source) for i in range(n)] == mask.tolist()


def test_keyframe_phase_and_exact_divisors():
    assert np.flatnonzero(keyframe_mask(25, 5, 25)).tolist() == [0, 5, 10, 15, 20]
    assert np.flatnonzero(keyframe_mask(12, 5, 25, start=3)).tolist() == [3, 8]
    assert not is_keyframe(2, 5, 25, start=3) and is_keyframe(8, 5, 25, start=3)
    with pytest.raises(ValueError, match="fps must be > 0"):
        keyframe_mask(10, 0, 25)


def test_complexity_is_the_size_model_sum_bit_for_bit():
    """c (numba terms, numpy's sum) is exactly the sum of `size_model` at step 1 it
    replaced, on real frames: the tuner's inputs do not move."""
    from stac.codec.quant import size_model
    from stac.codec.transform import rgb_to_coeffs
    from stac.frames import default_clip_path, open_video

    for f in open_video(default_clip_path(), size=(200, 150), max_frames=3):
        coeffs = list(rgb_to_coeffs(f.rgb))
        coeffs[1] = coeffs[1] / 7.0  # many |s| < 1 as well
        want = float(sum(size_model(c.reshape(-1, 1), 1.0).sum() for c in coeffs))
        assert complexity(coeffs) == want
