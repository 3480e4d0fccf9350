"""The region grid of a stream (STAC §IV-B, §V): regions of R x R luma 4x4 blocks.

One `RegionGrid` per stream, built from the frame size by the scheme and handed to both
halves, answers every question about regions: the grid's shape, the region of each block
of a (luma or chroma) coefficient plane, of each pixel, the pixels per region. The rules
are the codec's (`stac.codec.quant`): the last row/column of regions is smaller, and a
chroma 4x4 block belongs to the region of its top-left luma block. Index maps are computed
once per grid and returned read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stac.codec.quant import expand_levels, region_grid_shape

REGION_SIZE = 6  # luma 4x4 blocks per region side (the paper's 6x6 default)
BLOCK = 4  # pixels per block side (the codec's 4x4 transform)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class RegionGrid:
    """Regions of `region_size` x `region_size` 4x4 blocks over a `width` x `height` frame."""

    width: int
    height: int
    region_size: int = REGION_SIZE
    block: int = field(default=BLOCK, init=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("width", "height", "region_size"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"region grid {name} must be an integer >= 1, got {value!r}")

    @classmethod
    def for_frame(cls, frame_size: tuple[int, int], region_size: int = REGION_SIZE) -> RegionGrid:
        """The grid of frames of `frame_size` = (width, height)."""
        w, h = (int(v) for v in frame_size)
        return cls(w, h, int(region_size))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the region-level map."""
        return region_grid_shape(self.height, self.width, self.region_size)

    @property
    def count(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def check(self, levels: np.ndarray, name: str = "levels") -> np.ndarray:
        """`levels` as an array, or a ValueError naming the grid when its shape differs."""
        levels = np.asarray(levels)
        if levels.shape != self.shape:
            raise ValueError(f"{name} {levels.shape} do not match the region grid {self.shape} "
                             f"of a {self.width}x{self.height} frame with "
                             f"{self.region_size}x{self.region_size}-block regions")
        return levels

    def block_regions(self, n_by: int, n_bx: int, chroma: bool = False) -> np.ndarray:
        """(n_by, n_bx) row-major region index of every 4x4 block of a luma (or chroma)
        plane of that many blocks (padding blocks join the last region row/column)."""
        key = ("blocks", int(n_by), int(n_bx), bool(chroma))
        if key not in self._cache:
            ids = np.arange(self.count).reshape(self.shape)
            self._cache[key] = _frozen(expand_levels(ids, n_by, n_bx, self.region_size,
                                                     chroma=chroma))
        return self._cache[key]

    def pixel_regions(self) -> np.ndarray:
        """(H, W) region index (row-major) of every pixel."""
        if "pixels" not in self._cache:
            side = self.block * self.region_size
            ys = np.arange(self.height) // side
            xs = np.arange(self.width) // side
            self._cache["pixels"] = _frozen(ys[:, None] * self.shape[1] + xs[None, :])
        return self._cache["pixels"]

    def pixel_counts(self) -> np.ndarray:
        """(rows, cols) number of pixels of each region."""
        if "areas" not in self._cache:
            side = self.block * self.region_size
            rows, cols = self.shape
            hs = np.minimum(side, self.height - side * np.arange(rows))
            ws = np.minimum(side, self.width - side * np.arange(cols))
            self._cache["areas"] = _frozen(np.outer(hs, ws))
        return self._cache["areas"]

    def level_map(self, levels: np.ndarray) -> np.ndarray:
        """Region levels (rows, cols) -> (H, W) map of the level of each pixel's region."""
        levels = self.check(levels)
        return levels.ravel()[self.pixel_regions()]

    def memo(self, key, build):
        """A per-grid cache for derived index structures (`build()` runs once per key)."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


def grid_for(height: int, width: int, region_size: int = REGION_SIZE,
             grid: RegionGrid | None = None) -> RegionGrid:
    """`grid` when given, else the grid of a `width` x `height` frame (the functions that
    accept a stream's grid or, for direct use, a frame size)."""
    return RegionGrid(width, height, region_size) if grid is None else grid
