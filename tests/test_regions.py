"""The stream's region grid (stac.regions) against brute-force region rules."""

from __future__ import annotations

import numpy as np
import pytest

from stac.codec.quant import region_grid_shape
from stac.regions import RegionGrid


@pytest.mark.parametrize("width,height,size", [(130, 100, 6), (480, 360, 6), (70, 52, 2)])
def test_grid_matches_the_codecs_region_rules(width, height, size):
    grid = RegionGrid(width, height, size)
    rows, cols = grid.shape
    assert (rows, cols) == region_grid_shape(height, width, size) and grid.count == rows * cols
    side = 4 * size
    pixels = grid.pixel_regions()
    for y in range(0, height, 7):
        for x in range(0, width, 5):
            assert pixels[y, x] == (y // side) * cols + x // side
    assert np.array_equal(np.bincount(pixels.ravel(), minlength=grid.count),
                          grid.pixel_counts().ravel())
    nby, nbx = -(-height // 8) * 2, -(-width // 8) * 2  # luma blocks of the coefficient plane
    luma = grid.block_regions(nby, nbx)
    chroma = grid.block_regions(nby // 2, nbx // 2, chroma=True)
    for by in range(nby):
        for bx in range(nbx):
            assert luma[by, bx] == min(by // size, rows - 1) * cols + min(bx // size, cols - 1)
    for by in range(nby // 2):
        for bx in range(nbx // 2):  # a chroma block joins the region of its top-left luma block
            assert chroma[by, bx] == luma[2 * by, 2 * bx]
    assert grid.block_regions(nby, nbx) is luma  # built once per grid
    levels = np.arange(grid.count).reshape(grid.shape)
    assert np.array_equal(grid.level_map(levels), pixels)


def test_bad_grids_and_level_maps_are_errors():
    with pytest.raises(ValueError, match="region_size"):
        RegionGrid(100, 100, 0)
    with pytest.raises(ValueError, match="do not match the region grid"):
        RegionGrid(130, 100).level_map(np.zeros((4, 6)))
    assert RegionGrid.for_frame((640, 272)) == RegionGrid(640, 272, 6)
