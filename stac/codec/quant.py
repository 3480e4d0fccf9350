"""Per-region quantisation tables (STAC §IV-A, §VII): table sets, region maps, (de)quantisation.

A table set T holds L levels x 3 components (Y, Cb, Cr) x 16 frequencies (n = 4*v + u) of
positive steps. Steps are snapped to multiples of 1/16 in [1/16, 4095.9375] so that they
travel exactly in the bitstream. A region map holds one level per region of R x R luma 4x4
blocks (default 6x6, i.e. 24x24 pixels; the last row/column of regions is smaller). A chroma
4x4 block (8x8 luma pixels) uses the level of the region holding its top-left luma block;
with an even R every chroma block lies inside one region.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

STEP_UNIT = 16  # steps travel as uint16 counts of 1/16
MIN_STEP = 1.0 / STEP_UNIT
MAX_STEP = 65535.0 / STEP_UNIT
DEADZONE_INTRA = 1.0 / 3.0  # rounding offsets of the H.264 reference encoder (JM)
DEADZONE_INTER = 1.0 / 6.0

# H.264 chroma QP as a function of luma QP (Table 8-15), for the default ladder.
_H264_CHROMA_QP = np.array(
    list(range(30))
    + [29, 30, 31, 32, 32, 33, 34, 34, 35, 35, 36, 36, 37, 37, 37, 38, 38, 38]
    + [39, 39, 39, 39]
)


def h264_qstep(qp: np.ndarray | int) -> np.ndarray:
    """H.264 quantiser step size for integer QP (0.625 at QP 0, doubling every 6)."""
    qp = np.asarray(qp, dtype=np.int64)
    base = np.array([0.625, 0.6875, 0.8125, 0.875, 1.0, 1.125])
    return base[qp % 6] * 2.0 ** (qp // 6)


@dataclass(frozen=True)
class TableSet:
    """L quantisation tables (L, 3, 16) of positive steps; `table_id` names the set in streams."""

    steps: np.ndarray
    table_id: int = field(init=False)

    def __post_init__(self) -> None:
        steps = np.asarray(self.steps, dtype=np.float64)
        if steps.ndim != 3 or steps.shape[1:] != (3, 16) or not 1 <= steps.shape[0] <= 255:
            raise ValueError(f"a table set is shaped (L<=255, 3, 16), got {steps.shape}")
        if not np.all(np.isfinite(steps)) or np.any(steps <= 0):
            raise ValueError("quantisation steps must be finite and positive")
        units = np.clip(np.rint(steps * STEP_UNIT), 1, 65535).astype(np.uint16)
        snapped = units.astype(np.float64) / STEP_UNIT
        snapped.setflags(write=False)
        object.__setattr__(self, "steps", snapped)
        object.__setattr__(self, "table_id", zlib.crc32(units.astype("<u2").tobytes()))

    @property
    def levels(self) -> int:
        return int(self.steps.shape[0])

    def to_units(self) -> np.ndarray:
        """The steps as uint16 counts of 1/16 (their bitstream form)."""
        return np.rint(self.steps * STEP_UNIT).astype(np.uint16)

    @classmethod
    def from_units(cls, units: np.ndarray) -> TableSet:
        return cls(np.asarray(units, dtype=np.float64) / STEP_UNIT)


def default_tables() -> TableSet:
    """52 flat levels = the H.264 QP ladder (level l ~ QP l, chroma QP per H.264 Table 8-15).

    For uniform-level use and the H.264 baseline comparison; STAC supplies its own
    gradient-derived tables (q_n^l = 2 B_l / (M |g_n|), §IV-A) as a TableSet.
    """
    qp = np.arange(52)
    steps = np.empty((52, 3, 16))
    steps[:, 0, :] = h264_qstep(qp)[:, None]
    steps[:, 1:, :] = h264_qstep(_H264_CHROMA_QP[qp])[:, None, None]
    return TableSet(steps)


def luma_blocks(height: int, width: int) -> tuple[int, int]:
    """Number of luma 4x4 blocks (rows, cols) covering a frame: ceil(H/4), ceil(W/4)."""
    return -(-height // 4), -(-width // 4)


def region_grid_shape(height: int, width: int, region_size: int = 6) -> tuple[int, int]:
    """Shape of the region-level map of a frame: regions of `region_size`^2 luma 4x4 blocks."""
    if region_size < 1:
        raise ValueError(f"region_size must be >= 1, got {region_size}")
    nby, nbx = luma_blocks(height, width)
    return -(-nby // region_size), -(-nbx // region_size)


def block_region_index(n_by: int, n_bx: int, region_size: int, grid: tuple[int, int]):
    """Region row and column of every block of an (n_by, n_bx) luma block grid (clipped)."""
    ry = np.minimum(np.arange(n_by) // region_size, grid[0] - 1)
    rx = np.minimum(np.arange(n_bx) // region_size, grid[1] - 1)
    return ry, rx


def expand_levels(
    level_map: np.ndarray, n_by: int, n_bx: int, region_size: int, chroma: bool = False
) -> np.ndarray:
    """Per-block levels (n_by, n_bx) of a region map; `chroma` maps chroma block grids (x2)."""
    level_map = np.asarray(level_map)
    scale = 2 if chroma else 1
    ry, rx = block_region_index(n_by * scale, n_bx * scale, region_size, level_map.shape)
    return level_map[np.ix_(ry[::scale], rx[::scale])]


def region_sum(per_block: np.ndarray, region_size: int, grid: tuple[int, int]) -> np.ndarray:
    """Sum a per-luma-block array (n_by, n_bx) over regions -> grid-shaped array."""
    n_by, n_bx = per_block.shape
    ry, rx = block_region_index(n_by, n_bx, region_size, grid)
    out = np.zeros(grid, dtype=np.float64)
    np.add.at(out, (ry[:, None], rx[None, :]), per_block)
    return out


def check_level_map(level_map: np.ndarray, grid: tuple[int, int], n_levels: int) -> np.ndarray:
    """Validate a region-level map against the frame's region grid and the table set."""
    lm = np.asarray(level_map)
    if lm.shape != grid:
        raise ValueError(f"level map shape {lm.shape} does not match the region grid {grid}")
    if not np.issubdtype(lm.dtype, np.integer):
        raise ValueError(f"level map must hold integers, got {lm.dtype}")
    if lm.size and (lm.min() < 0 or lm.max() >= n_levels):
        raise ValueError(f"levels must be in [0, {n_levels - 1}], got [{lm.min()}, {lm.max()}]")
    return lm.astype(np.int64)


def quantise(coeffs: np.ndarray, steps: np.ndarray, deadzone: float = DEADZONE_INTRA) -> np.ndarray:
    """Dead-zone quantisation as H.264: sign(s) * floor(|s| / q + f), f = 1/3 intra, 1/6 inter."""
    return (np.sign(coeffs) * np.floor(np.abs(coeffs) / steps + deadzone)).astype(np.int32)


def dequantise(levels: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Reconstructed coefficients: level * q."""
    return levels * steps


def block_steps(
    tables: TableSet, level_map: np.ndarray, n_by: int, n_bx: int, region_size: int, component: int
) -> np.ndarray:
    """Steps (n_by, n_bx, 16) of every block of one component (0 = Y, 1 = Cb, 2 = Cr)."""
    levels = expand_levels(level_map, n_by, n_bx, region_size, chroma=component > 0)
    return tables.steps[levels, component]


def size_model(coeffs: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Paper's size model per block (Eq. 2, 7): sum of log2|s/q| over coefficients with |s|>=q.

    Coefficients smaller than their step quantise to zero and contribute nothing (the raw
    sum would be negative for them). Returns the per-block sum (..., ) in bits.
    """
    ratio = np.abs(coeffs) / steps
    return np.where(ratio >= 1.0, np.log2(np.maximum(ratio, 1.0)), 0.0).sum(axis=-1)
