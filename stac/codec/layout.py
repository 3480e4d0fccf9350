"""Frame geometry shared by encoder and decoder: 16-padded planes, block levels, lambda."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stac.codec.color import pad_to_multiple
from stac.codec.quant import TableSet, expand_levels, region_grid_shape

# Lagrangian of H.264's reference encoder, lambda = 0.85 * 2**((QP - 12) / 3), rewritten in
# terms of the quantiser step (QP = 6 log2(q / 0.625)): lambda = 0.85 / 6.25 * q**2.
LAMBDA_PER_STEP2 = 0.85 / 6.25


@dataclass(frozen=True)
class FrameLayout:
    """Sizes of a frame of `width` x `height` pixels coded with regions of R x R 4x4 blocks."""

    width: int
    height: int
    region_size: int = 6

    @property
    def padded(self) -> tuple[int, int]:
        return -(-self.height // 16) * 16, -(-self.width // 16) * 16

    @property
    def grid(self) -> tuple[int, int]:
        return region_grid_shape(self.height, self.width, self.region_size)

    def pad_planes(self, y: np.ndarray, cb: np.ndarray, cr: np.ndarray):
        """Luma padded to the 16-multiple size, chroma (2, H/2, W/2), by edge replication."""
        ph, pw = self.padded
        y = pad_to_multiple(y, 16)[:ph, :pw]
        chroma = np.stack([pad_to_multiple(c, 8)[: ph // 2, : pw // 2] for c in (cb, cr)])
        return np.ascontiguousarray(y), np.ascontiguousarray(chroma)

    def crop_planes(self, y: np.ndarray, chroma: np.ndarray):
        """Copies of the frame's own planes (callers may not alias the codec's reference)."""
        ch, cw = (self.height + 1) // 2, (self.width + 1) // 2
        return (
            y[: self.height, : self.width].copy(),
            chroma[0, :ch, :cw].copy(),
            chroma[1, :ch, :cw].copy(),
        )

    def level_arrays(self, level_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Table level of every luma block (nby, nbx) and chroma block (ncy, ncx), padded size."""
        ph, pw = self.padded
        r = self.region_size
        lvl_y = expand_levels(level_map, ph // 4, pw // 4, r)
        lvl_c = expand_levels(level_map, ph // 8, pw // 8, r, chroma=True)
        return np.ascontiguousarray(lvl_y, dtype=np.int64), np.ascontiguousarray(lvl_c, np.int64)

    @staticmethod
    def lambdas(tables: TableSet, lvl_y: np.ndarray) -> np.ndarray:
        """Lagrange multiplier per macroblock from the geometric-mean luma step of its blocks."""
        q2 = np.exp(2.0 * np.log(tables.steps[:, 0, :]).mean(axis=-1))[lvl_y]
        nby, nbx = q2.shape
        return LAMBDA_PER_STEP2 * q2.reshape(nby // 4, 4, nbx // 4, 4).mean(axis=(1, 3))
