"""Prediction and the 4x4 transform kernels of the codec (numba): intra 4x4 luma / 8x8 chroma
(DC, vertical, horizontal, TrueMotion), quarter-pel motion compensation and motion search.

Pixel planes are uint8 2-D arrays whose size is a multiple of 16 (luma) / 8 (chroma).
Motion vectors are in quarter luma pixels (= eighth chroma pixels); references outside the
plane repeat its edge pixels; sub-pel samples are bilinear with integer rounding, so the
encoder and decoder predict identically.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

MODE_DC, MODE_V, MODE_H, MODE_TM = 0, 1, 2, 3
N_INTRA_MODES = 4
_A = 0.5
_B = math.sqrt(0.5) * math.cos(math.pi / 8)
_C = math.sqrt(0.5) * math.cos(3 * math.pi / 8)


@njit(cache=True)
def _fdct4_1d(a, i0, s):
    x0, x1, x2, x3 = a[i0], a[i0 + s], a[i0 + 2 * s], a[i0 + 3 * s]
    a[i0] = _A * (x0 + x1 + x2 + x3)
    a[i0 + s] = _B * (x0 - x3) + _C * (x1 - x2)
    a[i0 + 2 * s] = _A * (x0 - x1 - x2 + x3)
    a[i0 + 3 * s] = _C * (x0 - x3) - _B * (x1 - x2)


@njit(cache=True)
def _idct4_1d(a, i0, s):
    y0, y1, y2, y3 = a[i0], a[i0 + s], a[i0 + 2 * s], a[i0 + 3 * s]
    a[i0] = _A * y0 + _B * y1 + _A * y2 + _C * y3
    a[i0 + s] = _A * y0 + _C * y1 - _A * y2 - _B * y3
    a[i0 + 2 * s] = _A * y0 - _C * y1 - _A * y2 + _B * y3
    a[i0 + 3 * s] = _A * y0 - _B * y1 + _A * y2 - _C * y3


@njit(cache=True)
def fdct4(a):
    """In-place orthonormal 4x4 DCT-II of a raster-ordered float64[16] (coefficient 4*v + u)."""
    for r in range(4):
        _fdct4_1d(a, 4 * r, 1)
    for c in range(4):
        _fdct4_1d(a, c, 4)


@njit(cache=True)
def idct4(a):
    """In-place inverse of `fdct4`."""
    for c in range(4):
        _idct4_1d(a, c, 4)
    for r in range(4):
        _idct4_1d(a, 4 * r, 1)


@njit(cache=True)
def _intra_pred(rec, y0, x0, n, mode, pred):
    """n x n intra prediction (n = 4 or 8) at (y0, x0) of a plane from its reconstructed
    neighbours into pred (raster order); False if the mode's neighbours are unavailable."""
    top = y0 > 0
    left = x0 > 0
    sh = 2 if n == 4 else 3  # log2(n)
    if mode == MODE_DC:
        s = 0
        if top and left:
            for i in range(n):
                s += rec[y0 - 1, x0 + i] + rec[y0 + i, x0 - 1]
            dc = (s + n) >> (sh + 1)
        elif top:
            for i in range(n):
                s += rec[y0 - 1, x0 + i]
            dc = (s + (n >> 1)) >> sh
        elif left:
            for i in range(n):
                s += rec[y0 + i, x0 - 1]
            dc = (s + (n >> 1)) >> sh
        else:
            dc = 128
        for i in range(n * n):
            pred[i] = dc
        return True
    if mode == MODE_V:
        if not top:
            return False
        for r in range(n):
            for c in range(n):
                pred[n * r + c] = rec[y0 - 1, x0 + c]
        return True
    if mode == MODE_H:
        if not left:
            return False
        for r in range(n):
            for c in range(n):
                pred[n * r + c] = rec[y0 + r, x0 - 1]
        return True
    if mode == MODE_TM:
        if not (top and left):
            return False
        tl = np.int64(rec[y0 - 1, x0 - 1])
        for r in range(n):
            for c in range(n):
                v = np.int64(rec[y0 + r, x0 - 1]) + np.int64(rec[y0 - 1, x0 + c]) - tl
                pred[n * r + c] = min(255, max(0, v))
        return True
    return False


@njit(cache=True)
def intra4_pred(rec, py, px, mode, pred):
    """4x4 intra prediction at luma (py, px) from reconstructed neighbours; False if unavailable."""
    return _intra_pred(rec, py, px, 4, mode, pred)


@njit(cache=True)
def chroma8_pred(rec, cy, cx, mode, pred):
    """8x8 intra prediction of one chroma plane at (cy, cx); pred is int64[64]."""
    return _intra_pred(rec, cy, cx, 8, mode, pred)


@njit(cache=True)
def motion_compensate(ref, y0, x0, size, mvy, mvx, shift, pred):
    """Bilinear sub-pel prediction of a size x size block at (y0, x0) displaced by (mvy, mvx)
    in units of 1/2**shift pixel (shift 2: luma quarter-pel, 3: chroma eighth-pel)."""
    h, w = ref.shape
    one = 1 << shift
    qy = (y0 << shift) + mvy
    qx = (x0 << shift) + mvx
    iy = qy >> shift
    ix = qx >> shift
    fy = qy & (one - 1)
    fx = qx & (one - 1)
    inside = iy >= 0 and ix >= 0 and iy + size + 1 <= h and ix + size + 1 <= w
    if fy == 0 and fx == 0:
        for r in range(size):
            yy = min(max(iy + r, 0), h - 1)
            for c in range(size):
                xx = ix + c if inside else min(max(ix + c, 0), w - 1)
                pred[r * size + c] = ref[yy, xx]
        return
    w00 = (one - fx) * (one - fy)
    w01 = fx * (one - fy)
    w10 = (one - fx) * fy
    w11 = fx * fy
    rnd = 1 << (2 * shift - 1)
    if inside:  # no edge clamping needed: the same sums without the index clamps
        for r in range(size):
            ya = iy + r
            for c in range(size):
                xa = ix + c
                v = (
                    w00 * np.int64(ref[ya, xa])
                    + w01 * np.int64(ref[ya, xa + 1])
                    + w10 * np.int64(ref[ya + 1, xa])
                    + w11 * np.int64(ref[ya + 1, xa + 1])
                )
                pred[r * size + c] = (v + rnd) >> (2 * shift)
        return
    for r in range(size):
        ya = min(max(iy + r, 0), h - 1)
        yb = min(max(iy + r + 1, 0), h - 1)
        for c in range(size):
            xa = min(max(ix + c, 0), w - 1)
            xb = min(max(ix + c + 1, 0), w - 1)
            v = (
                w00 * np.int64(ref[ya, xa])
                + w01 * np.int64(ref[ya, xb])
                + w10 * np.int64(ref[yb, xa])
                + w11 * np.int64(ref[yb, xb])
            )
            pred[r * size + c] = (v + rnd) >> (2 * shift)


@njit(cache=True)
def sad_int16(src, y0, x0, ref, ry, rx):
    """SAD of the 16x16 source block at (y0, x0) against ref at integer (ry, rx) (edge-clamped)."""
    h, w = ref.shape
    s = 0
    if ry >= 0 and rx >= 0 and ry + 16 <= h and rx + 16 <= w:
        for r in range(16):
            for c in range(16):
                s += abs(np.int64(src[y0 + r, x0 + c]) - np.int64(ref[ry + r, rx + c]))
        return s
    for r in range(16):
        yy = min(max(ry + r, 0), h - 1)
        for c in range(16):
            xx = min(max(rx + c, 0), w - 1)
            s += abs(np.int64(src[y0 + r, x0 + c]) - np.int64(ref[yy, xx]))
    return s


@njit(cache=True)
def cost_int16(src, y0, x0, ref, ry, rx, extra, bound):
    """SAD + `extra` of the 16x16 block at integer (ry, rx), as `sad_int16`; stops after a row
    once the partial cost reaches `bound` (then the full cost could not be < `bound`: the
    partial integer SADs and their rounded sums with `extra` never decrease)."""
    h, w = ref.shape
    if not (ry >= 0 and rx >= 0 and ry + 16 <= h and rx + 16 <= w):
        return sad_int16(src, y0, x0, ref, ry, rx) + extra
    s = 0
    for r in range(16):
        for c in range(16):
            s += abs(np.int64(src[y0 + r, x0 + c]) - np.int64(ref[ry + r, rx + c]))
        if s + extra >= bound:
            return s + extra
    return s + extra


@njit(cache=True)
def cost_subpel16(src, y0, x0, ref, qy, qx, extra, bound):
    """SAD + `extra` of the 16x16 block against its quarter-pel prediction at (qy, qx) (as
    `motion_compensate` then `sad_pred16`), stopping early as `cost_int16` does."""
    h, w = ref.shape
    iy = (4 * y0 + qy) >> 2
    ix = (4 * x0 + qx) >> 2
    fy = (4 * y0 + qy) & 3
    fx = (4 * x0 + qx) & 3
    if fy == 0 and fx == 0 or not (iy >= 0 and ix >= 0 and iy + 17 <= h and ix + 17 <= w):
        pred = np.empty(256, dtype=np.int64)
        motion_compensate(ref, y0, x0, 16, qy, qx, 2, pred)
        return sad_pred16(src, y0, x0, pred) + extra
    w00 = (4 - fx) * (4 - fy)
    w01 = fx * (4 - fy)
    w10 = (4 - fx) * fy
    w11 = fx * fy
    s = 0
    for r in range(16):
        ya = iy + r
        for c in range(16):
            xa = ix + c
            v = (
                w00 * np.int64(ref[ya, xa])
                + w01 * np.int64(ref[ya, xa + 1])
                + w10 * np.int64(ref[ya + 1, xa])
                + w11 * np.int64(ref[ya + 1, xa + 1])
            )
            s += abs(np.int64(src[y0 + r, x0 + c]) - ((v + 8) >> 4))
        if s + extra >= bound:
            return s + extra
    return s + extra


@njit(cache=True)
def sad_pred16(src, y0, x0, pred):
    s = 0
    for r in range(16):
        for c in range(16):
            s += abs(np.int64(src[y0 + r, x0 + c]) - pred[16 * r + c])
    return s


@njit(cache=True)
def mv_bits_approx(d):
    """Approximate bits of one MVD component (for motion search costs)."""
    a = abs(d)
    n = 0
    while a > 0:
        a >>= 1
        n += 1
    return 1 + 2 * n


@njit(cache=True)
def motion_search(
    src, ref, y0, x0, mvp_y, mvp_x, cands, n_cands, search_range, lam_m, subpel, pred
):
    """Best quarter-pel MV of the 16x16 block at (y0, x0): predictor-seeded integer search
    (steps 8, 4, 2, 1) within +-search_range of the predictor, then half/quarter-pel refinement;
    cost = SAD + lam_m * bits(MV - predictor)."""
    cy = (mvp_y + 2) >> 2
    cx = (mvp_x + 2) >> 2
    best_y = 0
    best_x = 0
    best = -1.0
    for k in range(n_cands + 1):
        if k < n_cands:
            ty = (cands[k, 0] + 2) >> 2
            tx = (cands[k, 1] + 2) >> 2
        else:
            ty = 0
            tx = 0
        if abs(ty - cy) > search_range or abs(tx - cx) > search_range:
            continue
        cost = sad_int16(src, y0, x0, ref, y0 + ty, x0 + tx) + lam_m * (
            mv_bits_approx(4 * ty - mvp_y) + mv_bits_approx(4 * tx - mvp_x)
        )
        if best < 0 or cost < best:
            best = cost
            best_y = ty
            best_x = tx
    if best < 0:
        best_y = cy
        best_x = cx
        best = sad_int16(src, y0, x0, ref, y0 + cy, x0 + cx) + lam_m * (
            mv_bits_approx(4 * cy - mvp_y) + mv_bits_approx(4 * cx - mvp_x)
        )
    step = 8
    while step >= 1:
        for _ in range(4 if step > 1 else 8):
            moved = False
            for d in range(8 if step == 1 else 4):
                if d == 0:
                    dy, dx = -step, 0
                elif d == 1:
                    dy, dx = step, 0
                elif d == 2:
                    dy, dx = 0, -step
                elif d == 3:
                    dy, dx = 0, step
                elif d == 4:
                    dy, dx = -1, -1
                elif d == 5:
                    dy, dx = -1, 1
                elif d == 6:
                    dy, dx = 1, -1
                else:
                    dy, dx = 1, 1
                ty = best_y + dy
                tx = best_x + dx
                if abs(ty - cy) > search_range or abs(tx - cx) > search_range:
                    continue
                extra = lam_m * (mv_bits_approx(4 * ty - mvp_y) + mv_bits_approx(4 * tx - mvp_x))
                cost = cost_int16(src, y0, x0, ref, y0 + ty, x0 + tx, extra, best)
                if cost < best:
                    best = cost
                    best_y = ty
                    best_x = tx
                    moved = True
            if not moved:
                break
        step >>= 1
    qy = 4 * best_y
    qx = 4 * best_x
    if subpel:
        for half in (2, 1):
            cy0 = qy
            cx0 = qx
            for d in range(8):
                dy = (-half, -half, -half, 0, 0, half, half, half)[d]
                dx = (-half, 0, half, -half, half, -half, 0, half)[d]
                ty = cy0 + dy
                tx = cx0 + dx
                extra = lam_m * (mv_bits_approx(ty - mvp_y) + mv_bits_approx(tx - mvp_x))
                cost = cost_subpel16(src, y0, x0, ref, ty, tx, extra, best)
                if cost < best:
                    best = cost
                    qy = ty
                    qx = tx
    return qy, qx
