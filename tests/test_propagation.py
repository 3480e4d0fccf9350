"""Propagation (§V-B): a known translation of a real CamVid frame moves labels and levels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from device.flow import DISFlow, FlowCache, FlowConfig, to_grey
from device.propagation import (
    level_map,
    middle_levels,
    propagate_labels,
    propagate_levels,
)
from stac.codec.quant import region_grid_shape as region_grid

H, W, STEP = 168, 240, 6  # 7 x 10 regions of 24 pixels; 4 frames of 6 pixels = one region


@pytest.fixture(scope="module")
def scene(dataset):
    path = sorted((dataset("camvid") / "val").glob("*.png"))[3]
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    annot = cv2.imread(str(dataset("camvid") / "valannot" / path.name), cv2.IMREAD_UNCHANGED)
    return image, annot


def crops(a: np.ndarray, n: int, dx: int, dy: int):
    """Content moving by (dx, dy) per frame: crops of a real image (and its labels)."""
    y0, x0 = 100, 120
    return [a[y0 - t * dy:y0 - t * dy + H, x0 - t * dx:x0 - t * dx + W] for t in range(n)]


def flow_back(frames) -> FlowCache:
    cache = FlowCache(DISFlow(FlowConfig(preset="medium", finest_scale=0)))
    for t, f in enumerate(frames):
        cache.push(t, to_grey(f))
    cache.set_anchor(0)
    return cache


def test_labels_move_with_a_known_translation(scene):
    image, annot = scene
    frames, labels = crops(image, 5, STEP, 0), crops(annot, 5, STEP, 0)
    cache = flow_back(frames)
    out = propagate_labels(np.ascontiguousarray(labels[0]), cache.to_anchor())
    inner = np.s_[:, 4 * STEP + 8:]  # pixels whose source lies inside keyframe 0
    assert np.mean(out[inner] == labels[4][inner]) > 0.95
    # Without propagation, the stale labels would be much worse on this moving scene.
    assert np.mean(labels[0][inner] == labels[4][inner]) < np.mean(out[inner] == labels[4][inner])
    assert np.array_equal(propagate_labels(labels[0], np.zeros((H, W, 2), np.float32)), labels[0])


def test_levels_move_by_one_region(scene):
    image, _ = scene
    frames = crops(image, 5, STEP, 0)  # content moves right by 24 px = one region
    cache = flow_back(frames)
    rows, cols = region_grid(H, W)
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 32, size=(rows, cols)).astype(np.int16)
    out = propagate_levels(levels, cache.to_anchor(), cache.covered())
    assert out.shape == (rows, cols) and out.dtype == levels.dtype
    np.testing.assert_array_equal(out[:, 1:], levels[:, :-1])
    # Column 0 came from outside keyframe 0: it takes the nearest covered region's level.
    np.testing.assert_array_equal(out[:, 0], levels[:, 0])


def test_levels_move_down_with_a_vertical_translation(scene):
    image, _ = scene
    frames = crops(image, 5, 0, STEP)
    cache = flow_back(frames)
    levels = np.arange(70, dtype=np.int16).reshape(7, 10) % 32
    out = propagate_levels(levels, cache.to_anchor(), cache.covered())
    np.testing.assert_array_equal(out[1:], levels[:-1])
    np.testing.assert_array_equal(out[0], levels[0])


def test_uncovered_regions_take_the_nearest_covered_level():
    levels = np.array([[1, 2, 3], [4, 5, 6]], np.int16)
    covered = np.ones((48, 72), bool)
    covered[:, 48:] = False  # the last column of regions has no flow
    out = propagate_levels(levels, np.zeros((48, 72, 2), np.float32), covered)
    np.testing.assert_array_equal(out, [[1, 2, 2], [4, 5, 5]])
    none = propagate_levels(levels, np.zeros((48, 72, 2), np.float32), np.zeros((48, 72), bool))
    np.testing.assert_array_equal(none, levels)


def test_first_keyframe_uses_a_middle_level_and_shapes_are_checked():
    assert np.all(middle_levels(100, 130, 32) == 16)
    assert middle_levels(100, 130, 32).shape == (5, 6) == region_grid(100, 130)
    assert level_map(np.arange(30).reshape(5, 6), 100, 130)[99, 129] == 29
    with pytest.raises(ValueError, match="do not match"):
        level_map(np.zeros((4, 6)), 100, 130)
    with pytest.raises(ValueError, match="uint8"):
        propagate_labels(np.zeros((4, 4), np.int64), np.zeros((4, 4, 2), np.float32))
