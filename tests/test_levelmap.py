"""The compact level-map message of `stac-plus` (stac/levelmap.py): bit-exact round trips,
fewer bytes than the PNG map for typical maps, and clear errors on bad bytes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stac.codec.labels import encode_labels
from stac.levelmap import LevelMapError, decode_level_map, encode_level_map


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 20), cols=st.integers(1, 30),
       spread=st.integers(0, 255), with_reference=st.booleans(), uniform=st.integers(0, 255))
def test_level_maps_decode_bit_exactly(seed, rows, cols, spread, with_reference, uniform):
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, spread + 1, size=(rows, cols))
    reference = rng.integers(0, 256, size=(rows, cols)) if with_reference else None
    data = encode_level_map(levels, uniform, reference)
    out = decode_level_map(data, reference)
    assert out.levels.dtype == np.int16
    np.testing.assert_array_equal(out.levels, levels)
    assert out.uniform_level == uniform


def test_typical_maps_cost_fewer_bytes_than_png():
    rng = np.random.default_rng(0)
    reference = np.full((12, 20), 16)
    levels = reference + (rng.random((12, 20)) < 0.15) * rng.integers(-2, 3, (12, 20))
    delta = encode_level_map(levels, 16, reference)
    median = encode_level_map(levels, 16)
    png = encode_labels(levels.astype(np.uint8))
    assert len(delta) < len(png) / 2 and len(median) < len(png) / 2
    same = encode_level_map(reference, 16, reference)  # nothing changed: the header only
    assert len(same) == 10
    np.testing.assert_array_equal(decode_level_map(same, reference).levels, reference)


def test_a_message_against_a_reference_needs_that_reference():
    levels = np.arange(12).reshape(3, 4)
    data = encode_level_map(levels, 3, levels[::-1])
    with pytest.raises(LevelMapError, match="reference map; none given"):
        decode_level_map(data)
    with pytest.raises(LevelMapError, match="does not match"):
        decode_level_map(data, np.zeros((4, 3), int))


@pytest.mark.parametrize("data, match", [
    (b"", "too short"), (b"XX" + bytes(8), "not a version-1"),
])
def test_bad_bytes_are_a_clear_error(data, match):
    with pytest.raises(LevelMapError, match=match):
        decode_level_map(data)


def test_truncated_message_is_an_error():
    rng = np.random.default_rng(1)
    data = encode_level_map(rng.integers(0, 32, (10, 10)), 5)
    with pytest.raises(LevelMapError, match="truncated or corrupt"):
        decode_level_map(data[:-6])


@pytest.mark.parametrize("levels", [np.zeros((0, 3), int), np.full((2, 2), 300),
                                    np.ones((2, 2), float)])
def test_bad_maps_are_refused(levels):
    with pytest.raises(LevelMapError):
        encode_level_map(levels, 0)
