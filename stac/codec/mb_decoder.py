"""Decoder layer of the codec's macroblock loop (numba): parse each macroblock's syntax
(`parse_mb`), then reconstruct it (`reconstruct_mb`) with the common layer's prediction and
residual kernels; deblock the frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stac.codec.deblock import deblock_frame
from stac.codec.mb_common import (
    MAX_MV,
    MB_INTER,
    MB_INTRA,
    MB_SKIP,
    MBNeighbours,
    cbf_inc,
    mc_mb,
    mv_predictor,
    mvd_inc,
    neighbour_count,
    pred_intra_mode,
    reconstruct_block,
    set_skip,
)
from stac.codec.predict import (
    MODE_DC,
    MODE_H,
    MODE_TM,
    MODE_V,
    chroma8_pred,
    intra4_pred,
)
from stac.codec.rangecoder import (
    D_OVERREAD,
    dec_bit,
)
from stac.codec.syntax import (
    CAT_CHROMA_INTER,
    CAT_CHROMA_INTRA,
    CAT_LUMA_INTER,
    CAT_LUMA_INTRA,
    CTX_CHROMA_CODED,
    CTX_CHROMA_MODE,
    CTX_I4_FLAG,
    CTX_I4_REM,
    CTX_INTRA_MB,
    CTX_SKIP,
    ERR_INTRA_MODE,
    ERR_MV_RANGE,
    ERR_OK,
    ERR_TRUNCATED,
    dec_block,
    dec_mvd,
)

# ---- parse one macroblock -------------------------------------------------------------------


@njit(cache=True)
def intra_mode_available(mode, top, left):
    """Whether intra mode `mode` may be used with these neighbours (as `intra4_pred` and
    `chroma8_pred` decide it): DC always, vertical with a top, horizontal with a left,
    TrueMotion with both."""
    if mode == MODE_DC:
        return True
    if mode == MODE_V:
        return top
    if mode == MODE_H:
        return left
    if mode == MODE_TM:
        return top and left
    return False


@njit(cache=True)
def parse_mb(ds, buf, probs, is_intra, my, mx, nb, modes, lv, lvc):
    """Read one macroblock's syntax: its mode, intra modes (`modes`, 16 luma blocks), motion
    vector (into the neighbourhood `nb`), luma and chroma levels (`lv` (16, 16), `lvc`
    (8, 16)), updating the contexts' neighbourhood state (`MBNeighbours`) as it goes.
    Returns (mode, chroma intra mode, error code)."""
    mbtype, mv, mvdabs, imode, nz_y, nz_c = nb
    y0 = 16 * my
    x0 = 16 * mx
    cy0 = 8 * my
    cx0 = 8 * mx
    mode = MB_INTRA
    cm = 0
    if not is_intra:
        if dec_bit(ds, buf, probs, CTX_SKIP + neighbour_count(mbtype, my, mx, MB_SKIP)):
            mode = MB_SKIP
        elif dec_bit(ds, buf, probs, CTX_INTRA_MB + neighbour_count(mbtype, my, mx, MB_INTRA)) == 0:
            mode = MB_INTER
    if mode == MB_INTRA:
        mv[my, mx, 0] = 0
        mv[my, mx, 1] = 0
        mvdabs[my, mx, 0] = 0
        mvdabs[my, mx, 1] = 0
        for b in range(16):
            gby = y0 // 4 + b // 4
            gbx = x0 // 4 + b % 4
            pm = pred_intra_mode(imode, gby, gbx)
            if dec_bit(ds, buf, probs, CTX_I4_FLAG):
                m = pm
            else:
                rr = dec_bit(ds, buf, probs, CTX_I4_REM)
                if rr:
                    rr += dec_bit(ds, buf, probs, CTX_I4_REM + 1)
                m = rr if rr < pm else rr + 1
            imode[gby, gbx] = m
            modes[b] = m
            if not intra_mode_available(m, gby > 0, gbx > 0):
                return mode, cm, ERR_INTRA_MODE
            nz, err = dec_block(ds, buf, probs, lv[b], CAT_LUMA_INTRA, cbf_inc(nz_y, gby, gbx))
            if err != 0:
                return mode, cm, err
            nz_y[gby, gbx] = nz
        while cm < 3 and dec_bit(ds, buf, probs, CTX_CHROMA_MODE + cm) == 1:
            cm += 1
        if not intra_mode_available(cm, cy0 > 0, cx0 > 0):
            return mode, cm, ERR_INTRA_MODE
        ccat = CAT_CHROMA_INTRA
        inter = 0
    else:
        for r in range(4):
            for c in range(4):
                imode[y0 // 4 + r, x0 // 4 + c] = -1
        mvp_y, mvp_x = mv_predictor(mbtype, mv, my, mx)
        if mode == MB_SKIP:
            set_skip(mv, mvdabs, nz_y, nz_c, my, mx, mvp_y, mvp_x)
            return mode, cm, ERR_OK
        dy, err = dec_mvd(ds, buf, probs, 0, mvd_inc(mvdabs, my, mx, 0))
        if err != 0:
            return mode, cm, err
        dx, err = dec_mvd(ds, buf, probs, 1, mvd_inc(mvdabs, my, mx, 1))
        if err != 0:
            return mode, cm, err
        mvy = mvp_y + dy
        mvx = mvp_x + dx
        if abs(mvy) > MAX_MV or abs(mvx) > MAX_MV:
            return mode, cm, ERR_MV_RANGE
        mvdabs[my, mx, 0] = abs(dy)
        mvdabs[my, mx, 1] = abs(dx)
        mv[my, mx, 0] = mvy
        mv[my, mx, 1] = mvx
        for b in range(16):
            gby = y0 // 4 + b // 4
            gbx = x0 // 4 + b % 4
            nz, err = dec_block(ds, buf, probs, lv[b], CAT_LUMA_INTER, cbf_inc(nz_y, gby, gbx))
            if err != 0:
                return mode, cm, err
            nz_y[gby, gbx] = nz
        ccat = CAT_CHROMA_INTER
        inter = 1
    coded = dec_bit(ds, buf, probs, CTX_CHROMA_CODED + inter)
    for k in range(8):
        comp = k // 4
        b = k % 4
        cby = cy0 // 4 + b // 2
        cbx = cx0 // 4 + b % 2
        if coded:
            nz, err = dec_block(ds, buf, probs, lvc[k], ccat, cbf_inc(nz_c[comp], cby, cbx))
            if err != 0:
                return mode, cm, err
        else:
            nz = 0
            for i in range(16):
                lvc[k, i] = 0
        nz_c[comp, cby, cbx] = nz
    return mode, cm, ERR_OK


# ---- reconstruct one macroblock --------------------------------------------------------------


@njit(cache=True)
def reconstruct_mb(ctx, mode, cm, my, mx, mv, modes, lv, lvc, work):
    """Write one parsed macroblock's reconstruction into ctx.rec_y / rec_c: prediction (intra
    from the reconstructed neighbours, else motion-compensated from the reference) plus the
    dequantised, inverse-transformed levels (skip: the prediction alone)."""
    ref_y, ref_c, rec_y, rec_c, tab, lvl_y, lvl_c, _, _ = ctx
    pred16, rec16, pred_y, pred_c, tmp64, fbuf = work
    y0 = 16 * my
    x0 = 16 * mx
    cy0 = 8 * my
    cx0 = 8 * mx
    if mode == MB_INTRA:
        for b in range(16):
            py = y0 + 4 * (b // 4)
            px = x0 + 4 * (b % 4)
            intra4_pred(rec_y, py, px, modes[b], pred16)
            reconstruct_block(pred16, lv[b], tab[lvl_y[py // 4, px // 4], 0], fbuf, rec16)
            for r in range(4):
                for c in range(4):
                    rec_y[py + r, px + c] = rec16[4 * r + c]
        chroma8_pred(rec_c[0], cy0, cx0, cm, pred_c[0])
        chroma8_pred(rec_c[1], cy0, cx0, cm, pred_c[1])
    else:
        mc_mb(ref_y, ref_c, y0, x0, mv[my, mx, 0], mv[my, mx, 1], pred_y, pred_c, tmp64)
        if mode == MB_SKIP:
            for r in range(16):
                for c in range(16):
                    rec_y[y0 + r, x0 + c] = pred_y[16 * r + c]
            for comp in range(2):
                for r in range(8):
                    for c in range(8):
                        rec_c[comp, cy0 + r, cx0 + c] = pred_c[comp, 8 * r + c]
            return
        for b in range(16):
            by = b // 4
            bx = b % 4
            for r in range(4):
                for c in range(4):
                    pred16[4 * r + c] = pred_y[16 * (4 * by + r) + 4 * bx + c]
            reconstruct_block(pred16, lv[b], tab[lvl_y[y0 // 4 + by, x0 // 4 + bx], 0], fbuf,
                              rec16)
            for r in range(4):
                for c in range(4):
                    rec_y[y0 + 4 * by + r, x0 + 4 * bx + c] = rec16[4 * r + c]
    for k in range(8):
        comp = k // 4
        b = k % 4
        oy = 4 * (b // 2)
        ox = 4 * (b % 2)
        for r in range(4):
            for c in range(4):
                pred16[4 * r + c] = pred_c[comp, 8 * (oy + r) + ox + c]
        steps = tab[lvl_c[cy0 // 4 + b // 2, cx0 // 4 + b % 2], 1 + comp]
        reconstruct_block(pred16, lvc[k], steps, fbuf, rec16)
        for r in range(4):
            for c in range(4):
                rec_c[comp, cy0 + oy + r, cx0 + ox + c] = rec16[4 * r + c]


# ---- the frame ---------------------------------------------------------------------------------


@njit(cache=True)
def decode_mbs(ds, buf, probs, is_intra, ctx):
    """Decode all macroblocks of a frame into the `FrameContext` ctx's rec_y/rec_c (each
    parsed, then reconstructed), then deblock; returns an error code (0 = ok)."""
    h, w = ctx.rec_y.shape
    nmby = h // 16
    nmbx = w // 16
    nb = MBNeighbours(ctx.mbtype, np.zeros((nmby, nmbx, 2), dtype=np.int64),
                      np.zeros((nmby, nmbx, 2), dtype=np.int64),
                      np.full((h // 4, w // 4), -1, dtype=np.int64),
                      np.zeros((h // 4, w // 4), dtype=np.int64),
                      np.zeros((2, h // 8, w // 8), dtype=np.int64))
    work = (np.zeros(16, dtype=np.int64), np.zeros(16, dtype=np.int64),
            np.zeros(256, dtype=np.int64), np.zeros((2, 64), dtype=np.int64),
            np.zeros(64, dtype=np.int64), np.zeros(16, dtype=np.float64))
    modes = np.zeros(16, dtype=np.int64)
    lv = np.zeros((16, 16), dtype=np.int64)
    lvc = np.zeros((8, 16), dtype=np.int64)
    for my in range(nmby):
        for mx in range(nmbx):
            if ds[D_OVERREAD] > 0:
                return ERR_TRUNCATED
            mode, cm, err = parse_mb(ds, buf, probs, is_intra, my, mx, nb, modes, lv, lvc)
            if err != ERR_OK:
                return err
            reconstruct_mb(ctx, mode, cm, my, mx, nb.mv, modes, lv, lvc, work)
            ctx.mbtype[my, mx] = mode
    if ds[D_OVERREAD] > 0:
        return ERR_TRUNCATED
    deblock_frame(ctx.rec_y, ctx.rec_c, ctx.mbtype, nb.mv, nb.nz_y, ctx.lvl_y, ctx.lvl_c, ctx.qps)
    return ERR_OK
