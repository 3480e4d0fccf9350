"""Common layer of the codec's macroblock loops (numba), shared by encoder and decoder:
residual coding of one 4x4 block (transform, dead-zone quantisation, reconstruction),
intra-mode and motion-vector prediction from the neighbours, motion compensation of a
macroblock and the neighbourhood contexts of the syntax. Prediction kernels live in
`stac.codec.predict`, the in-loop filter in `stac.codec.deblock`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from stac.codec.predict import (
    MODE_DC,
    fdct4,
    idct4,
    motion_compensate,
)
from stac.codec.syntax import (
    ZIGZAG,
    mvd_ctx_inc,
)

MB_INTRA, MB_INTER, MB_SKIP = 0, 1, 2


class FrameContext(NamedTuple):
    """What the macroblock loops of one frame read and write, in one structure (numba
    passes it as a named tuple of arrays): the reference planes, the reconstruction being
    written, the table set (L, 3, 16), the table level of every luma / chroma 4x4 block,
    each MB's mode (written) and the deblocking QP of every level."""

    ref_y: np.ndarray  # (H, W) uint8, padded to 16
    ref_c: np.ndarray  # (2, H/2, W/2) uint8
    rec_y: np.ndarray  # written
    rec_c: np.ndarray  # written
    tab: np.ndarray
    lvl_y: np.ndarray
    lvl_c: np.ndarray
    mbtype: np.ndarray  # (H/16, W/16) int64, written
    qps: np.ndarray


class MBNeighbours(NamedTuple):
    """What later macroblocks' contexts and predictors read from earlier ones: MB modes and
    motion vectors (with the magnitudes of their coded differences), intra 4x4 modes and the
    coded-block flags of luma and chroma 4x4 blocks."""

    mbtype: np.ndarray  # (nmby, nmbx)
    mv: np.ndarray  # (nmby, nmbx, 2) quarter-pels
    mvdabs: np.ndarray  # (nmby, nmbx, 2)
    imode: np.ndarray  # (nby, nbx), -1 for non-intra blocks
    nz_y: np.ndarray  # (nby, nbx)
    nz_c: np.ndarray  # (2, nby / 2, nbx / 2)


class EncoderInputs(NamedTuple):
    """What only the encoder's loop needs besides the `FrameContext`: the source planes, the
    Lagrangian of every MB, and the per-luma-block outputs (real bits, size model V_r)."""

    src_y: np.ndarray
    src_c: np.ndarray
    lam_mb: np.ndarray
    bits_blk: np.ndarray  # written
    size_blk: np.ndarray  # written

MAX_MV = 1 << 14  # quarter-pels
_DECIMATE_SCORE = np.array([3, 2, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.int64)


# ---- residual coding of one 4x4 block -------------------------------------------------------


@njit(cache=True)
def quantise_block(src16, pred16, steps, deadzone, lv, buf):
    """Residual -> DCT -> dead-zone quantisation into lv (raster order); returns the paper's
    size model of the block, sum of log2(|s|/q) over |s| >= q (Eq. 2, 7)."""
    for i in range(16):
        buf[i] = src16[i] - pred16[i]
    fdct4(buf)
    size = 0.0
    for i in range(16):
        ratio = abs(buf[i]) / steps[i]
        if ratio >= 1.0:
            size += math.log2(ratio)
        q = np.int64(math.floor(ratio + deadzone))
        lv[i] = -q if buf[i] < 0 else q
    return size


@njit(cache=True)
def reconstruct_block(pred16, lv, steps, buf, out16):
    """Dequantise -> inverse DCT -> add prediction -> clip: the decoder's reconstruction."""
    nz = False
    for i in range(16):
        buf[i] = lv[i] * steps[i]
        if lv[i] != 0:
            nz = True
    if not nz:
        for i in range(16):
            out16[i] = pred16[i]
        return
    idct4(buf)
    for i in range(16):
        v = pred16[i] + np.int64(math.floor(buf[i] + 0.5))
        out16[i] = min(255, max(0, v))


@njit(cache=True)
def decimation_score(lv):
    """H.264 JM-style score of a block with only +-1 levels (9 if any |level| > 1)."""
    score = 0
    run = 0
    for i in range(16):
        v = lv[ZIGZAG[i]]
        if v == 0:
            run += 1
            continue
        if abs(v) > 1:
            return 9
        score += _DECIMATE_SCORE[run]
        run = 0
    return score


@njit(cache=True)
def all_zero(lv):
    for k in range(lv.shape[0]):
        for i in range(16):
            if lv[k, i] != 0:
                return False
    return True


@njit(cache=True)
def cbf_inc(nz, by, bx):
    inc = 0
    if bx > 0:
        inc += nz[by, bx - 1]
    if by > 0:
        inc += nz[by - 1, bx]
    return inc


@njit(cache=True)
def pred_intra_mode(imode, by, bx):
    ml = imode[by, bx - 1] if bx > 0 else -1
    mt = imode[by - 1, bx] if by > 0 else -1
    return min(ml if ml >= 0 else MODE_DC, mt if mt >= 0 else MODE_DC)



# ---- motion vector prediction ---------------------------------------------------------------


@njit(cache=True)
def mv_predictor(mbtype, mv, my, mx):
    """H.264 median MV predictor from the left (A), top (B) and top-right (C, else top-left)."""
    nmbx = mbtype.shape[1]
    ay = 0
    ax = 0
    by_ = 0
    bx_ = 0
    cy = 0
    cx = 0
    a_av = mx > 0
    b_av = my > 0
    if my > 0 and mx + 1 < nmbx:
        c_av = True
        cmy, cmx = my - 1, mx + 1
    elif my > 0 and mx > 0:
        c_av = True
        cmy, cmx = my - 1, mx - 1
    else:
        c_av = False
        cmy, cmx = 0, 0
    n_inter = 0
    if a_av and mbtype[my, mx - 1] != MB_INTRA:
        ay, ax = mv[my, mx - 1, 0], mv[my, mx - 1, 1]
        n_inter += 1
        last_y, last_x = ay, ax
    if b_av and mbtype[my - 1, mx] != MB_INTRA:
        by_, bx_ = mv[my - 1, mx, 0], mv[my - 1, mx, 1]
        n_inter += 1
        last_y, last_x = by_, bx_
    if c_av and mbtype[cmy, cmx] != MB_INTRA:
        cy, cx = mv[cmy, cmx, 0], mv[cmy, cmx, 1]
        n_inter += 1
        last_y, last_x = cy, cx
    if a_av and not b_av and not c_av:
        return ay, ax
    if n_inter == 1:
        return last_y, last_x
    py = max(min(ay, by_), min(max(ay, by_), cy))
    px = max(min(ax, bx_), min(max(ax, bx_), cx))
    return py, px



# ---- macroblock neighbourhood and motion compensation ---------------------------------------


@njit(cache=True)
def mc_mb(ref_y, ref_c, y0, x0, mvy, mvx, pred_y, pred_c, tmp64):
    motion_compensate(ref_y, y0, x0, 16, mvy, mvx, 2, pred_y)
    for comp in range(2):
        motion_compensate(ref_c[comp], y0 // 2, x0 // 2, 8, mvy, mvx, 3, tmp64)
        for i in range(64):
            pred_c[comp, i] = tmp64[i]


@njit(cache=True)
def set_skip(mv, mvdabs, nz_y, nz_c, my, mx, mvp_y, mvp_x):
    """What a skipped MB leaves for its neighbours: the predicted MV, no MV difference and
    no coded luma or chroma blocks."""
    mv[my, mx, 0] = mvp_y
    mv[my, mx, 1] = mvp_x
    mvdabs[my, mx, 0] = 0
    mvdabs[my, mx, 1] = 0
    for r in range(4):
        for c in range(4):
            nz_y[4 * my + r, 4 * mx + c] = 0
    for comp in range(2):
        for r in range(2):
            for c in range(2):
                nz_c[comp, 2 * my + r, 2 * mx + c] = 0


@njit(cache=True)
def neighbour_count(mbtype, my, mx, kind):
    n = 0
    if mx > 0 and mbtype[my, mx - 1] == kind:
        n += 1
    if my > 0 and mbtype[my - 1, mx] == kind:
        n += 1
    return n


@njit(cache=True)
def mvd_inc(mvdabs, my, mx, comp):
    s = 0
    if mx > 0:
        s += mvdabs[my, mx - 1, comp]
    if my > 0:
        s += mvdabs[my - 1, mx, comp]
    return mvd_ctx_inc(s)


