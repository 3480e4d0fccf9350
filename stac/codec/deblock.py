"""In-loop deblocking filter (H.264 §8.7, simplified), applied identically by encoder and decoder.

After all macroblocks of a frame are reconstructed, every 4x4 block edge is filtered, first
all vertical edges, then all horizontal ones (H.264 goes macroblock by macroblock). The
boundary strength is H.264's: 4 at macroblock edges touching an intra macroblock, 3 inside
one, 2 where either block has coded luma coefficients, 1 across macroblocks whose motion
vectors differ by a pixel or more, else 0 (not filtered). Thresholds alpha, beta and tc0
come from H.264's tables, indexed by the QP equivalent of each block's table level (from
the geometric-mean step of its quantisation table), so coarser regions are smoothed more.
The filtered frame is the output and the next reference; intra prediction inside a frame
uses unfiltered pixels, as in H.264.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_ALPHA = np.array(
    [0] * 16
    + [
        4,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        12,
        13,
        15,
        17,
        20,
        22,
        25,
        28,
        32,
        36,
        40,
        45,
        50,
        56,
        63,
        71,
        80,
        90,
        101,
        113,
        127,
        144,
        162,
        182,
        203,
        226,
        255,
        255,
    ],
    dtype=np.int64,
)
_BETA = np.array(
    [0] * 16
    + [
        2,
        2,
        2,
        3,
        3,
        3,
        3,
        4,
        4,
        4,
        6,
        6,
        7,
        7,
        8,
        8,
        9,
        9,
        10,
        10,
        11,
        11,
        12,
        12,
        13,
        13,
        14,
        14,
        15,
        15,
        16,
        16,
        17,
        17,
        18,
        18,
    ],
    dtype=np.int64,
)
_TC0 = np.array(
    [[0, 0, 0]] * 17
    + [
        [0, 0, 1],
        [0, 0, 1],
        [0, 0, 1],
        [0, 0, 1],
        [0, 1, 1],
        [0, 1, 1],
        [1, 1, 1],
        [1, 1, 1],
        [1, 1, 1],
        [1, 1, 1],
        [1, 1, 2],
        [1, 1, 2],
        [1, 1, 2],
        [1, 1, 2],
        [1, 2, 3],
        [1, 2, 3],
        [2, 2, 3],
        [2, 2, 4],
        [2, 3, 4],
        [2, 3, 4],
        [3, 3, 5],
        [3, 4, 6],
        [3, 4, 6],
        [4, 5, 7],
        [4, 5, 8],
        [4, 6, 9],
        [5, 7, 10],
        [6, 8, 11],
        [6, 8, 13],
        [7, 10, 14],
        [8, 11, 16],
        [9, 12, 18],
        [10, 13, 20],
        [11, 15, 23],
        [13, 17, 25],
    ],
    dtype=np.int64,
)
MB_INTRA = 0


def level_qps(steps: np.ndarray) -> np.ndarray:
    """QP equivalent (0..51) of every level and component: 6 log2(q / 0.625), q the
    geometric-mean step of the table row."""
    gm = np.exp(np.log(steps).mean(axis=-1))
    return np.clip(np.rint(6.0 * np.log2(gm / 0.625)), 0, 51).astype(np.int64)


@njit(cache=True)
def _clip3(lo, hi, v):
    return lo if v < lo else (hi if v > hi else v)


@njit(cache=True)
def _filter_luma(plane, y, x, dy, dx, bs, qp):
    """Filter the 4 sample lines across the edge before (y, x); (dy, dx) steps across it."""
    alpha = _ALPHA[qp]
    beta = _BETA[qp]
    if alpha == 0:
        return
    sy = dx  # step along the edge
    sx = dy
    for k in range(4):
        yy = y + k * sy
        xx = x + k * sx
        p0 = np.int64(plane[yy - dy, xx - dx])
        p1 = np.int64(plane[yy - 2 * dy, xx - 2 * dx])
        p2 = np.int64(plane[yy - 3 * dy, xx - 3 * dx])
        q0 = np.int64(plane[yy, xx])
        q1 = np.int64(plane[yy + dy, xx + dx])
        q2 = np.int64(plane[yy + 2 * dy, xx + 2 * dx])
        if not (abs(p0 - q0) < alpha and abs(p1 - p0) < beta and abs(q1 - q0) < beta):
            continue
        ap = abs(p2 - p0)
        aq = abs(q2 - q0)
        if bs < 4:
            tc0 = _TC0[qp, bs - 1]
            tc = tc0 + (1 if ap < beta else 0) + (1 if aq < beta else 0)
            delta = _clip3(-tc, tc, (((q0 - p0) << 2) + (p1 - q1) + 4) >> 3)
            plane[yy - dy, xx - dx] = _clip3(0, 255, p0 + delta)
            plane[yy, xx] = _clip3(0, 255, q0 - delta)
            if ap < beta:
                plane[yy - 2 * dy, xx - 2 * dx] = _clip3(
                    0, 255, p1 + _clip3(-tc0, tc0, (p2 + ((p0 + q0 + 1) >> 1) - (p1 << 1)) >> 1)
                )
            if aq < beta:
                plane[yy + dy, xx + dx] = _clip3(
                    0, 255, q1 + _clip3(-tc0, tc0, (q2 + ((p0 + q0 + 1) >> 1) - (q1 << 1)) >> 1)
                )
        else:
            p3 = np.int64(plane[yy - 4 * dy, xx - 4 * dx])
            q3 = np.int64(plane[yy + 3 * dy, xx + 3 * dx])
            strong = abs(p0 - q0) < ((alpha >> 2) + 2)
            if strong and ap < beta:
                plane[yy - dy, xx - dx] = (p2 + 2 * p1 + 2 * p0 + 2 * q0 + q1 + 4) >> 3
                plane[yy - 2 * dy, xx - 2 * dx] = (p2 + p1 + p0 + q0 + 2) >> 2
                plane[yy - 3 * dy, xx - 3 * dx] = (2 * p3 + 3 * p2 + p1 + p0 + q0 + 4) >> 3
            else:
                plane[yy - dy, xx - dx] = (2 * p1 + p0 + q1 + 2) >> 2
            if strong and aq < beta:
                plane[yy, xx] = (p1 + 2 * p0 + 2 * q0 + 2 * q1 + q2 + 4) >> 3
                plane[yy + dy, xx + dx] = (p0 + q0 + q1 + q2 + 2) >> 2
                plane[yy + 2 * dy, xx + 2 * dx] = (2 * q3 + 3 * q2 + q1 + q0 + p0 + 4) >> 3
            else:
                plane[yy, xx] = (2 * q1 + q0 + p1 + 2) >> 2


@njit(cache=True)
def _filter_chroma(plane, y, x, dy, dx, bs, qp):
    """Filter 2 chroma sample lines across the edge before (y, x) (p0/q0 only, as H.264)."""
    alpha = _ALPHA[qp]
    beta = _BETA[qp]
    if alpha == 0:
        return
    sy = dx
    sx = dy
    for k in range(2):
        yy = y + k * sy
        xx = x + k * sx
        p0 = np.int64(plane[yy - dy, xx - dx])
        p1 = np.int64(plane[yy - 2 * dy, xx - 2 * dx])
        q0 = np.int64(plane[yy, xx])
        q1 = np.int64(plane[yy + dy, xx + dx])
        if not (abs(p0 - q0) < alpha and abs(p1 - p0) < beta and abs(q1 - q0) < beta):
            continue
        if bs < 4:
            tc = _TC0[qp, bs - 1] + 1
            delta = _clip3(-tc, tc, (((q0 - p0) << 2) + (p1 - q1) + 4) >> 3)
            plane[yy - dy, xx - dx] = _clip3(0, 255, p0 + delta)
            plane[yy, xx] = _clip3(0, 255, q0 - delta)
        else:
            plane[yy - dy, xx - dx] = (2 * p1 + p0 + q1 + 2) >> 2
            plane[yy, xx] = (2 * q1 + q0 + p1 + 2) >> 2


@njit(cache=True)
def _strength(mbtype, mv, nz_y, by0, bx0, by1, bx1):
    """Boundary strength between luma blocks (by0, bx0) (p side) and (by1, bx1) (q side)."""
    m0y, m0x = by0 // 4, bx0 // 4
    m1y, m1x = by1 // 4, bx1 // 4
    mb_edge = m0y != m1y or m0x != m1x
    if mbtype[m0y, m0x] == MB_INTRA or mbtype[m1y, m1x] == MB_INTRA:
        return 4 if mb_edge else 3
    if nz_y[by0, bx0] != 0 or nz_y[by1, bx1] != 0:
        return 2
    if mb_edge and (
        abs(mv[m0y, m0x, 0] - mv[m1y, m1x, 0]) >= 4 or abs(mv[m0y, m0x, 1] - mv[m1y, m1x, 1]) >= 4
    ):
        return 1
    return 0


@njit(cache=True)
def deblock_frame(rec_y, rec_c, mbtype, mv, nz_y, lvl_y, lvl_c, qps):
    """Filter a reconstructed frame in place (luma and both chroma planes)."""
    nby, nbx = nz_y.shape
    for vertical in (True, False):
        for by in range(nby):
            for bx in range(nbx):
                if vertical:
                    if bx == 0:
                        continue
                    pby, pbx = by, bx - 1
                    dy, dx = 0, 1
                else:
                    if by == 0:
                        continue
                    pby, pbx = by - 1, bx
                    dy, dx = 1, 0
                bs = _strength(mbtype, mv, nz_y, pby, pbx, by, bx)
                if bs == 0:
                    continue
                qp = (qps[lvl_y[pby, pbx], 0] + qps[lvl_y[by, bx], 0] + 1) >> 1
                _filter_luma(rec_y, 4 * by, 4 * bx, dy, dx, bs, qp)
                # chroma edges lie on every other luma edge (8 luma = 4 chroma pixels)
                if (bx % 2 == 0) if vertical else (by % 2 == 0):
                    cy = 2 * by
                    cx = 2 * bx
                    for comp in range(2):
                        qc = (
                            qps[lvl_c[(pby // 2), (pbx // 2)], 1 + comp]
                            + qps[lvl_c[by // 2, bx // 2], 1 + comp]
                            + 1
                        ) >> 1
                        _filter_chroma(rec_c[comp], cy, cx, dy, dx, bs, qc)
