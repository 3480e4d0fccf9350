"""Decoder layer of the codec's macroblock loop (numba): parse each macroblock's syntax and
reconstruct it with the common layer's prediction and residual kernels, then deblock.
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
    cbf_inc,
    mc_mb,
    mv_predictor,
    mvd_inc,
    neighbour_count,
    pred_intra_mode,
    reconstruct_block,
)
from stac.codec.predict import (
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

# ---- the decoder ----------------------------------------------------------------------------


@njit(cache=True)
def decode_mbs(ds, buf, probs, is_intra, ctx):
    """Decode all macroblocks of a frame into the `FrameContext` ctx's rec_y/rec_c; returns
    an error code (0 = ok)."""
    ref_y, ref_c, rec_y, rec_c, tab, lvl_y, lvl_c, mbtype, qps = ctx
    h, w = rec_y.shape
    nmby = h // 16
    nmbx = w // 16
    nz_y = np.zeros((h // 4, w // 4), dtype=np.int64)
    nz_c = np.zeros((2, h // 8, w // 8), dtype=np.int64)
    imode = np.full((h // 4, w // 4), -1, dtype=np.int64)
    mv = np.zeros((nmby, nmbx, 2), dtype=np.int64)
    mvdabs = np.zeros((nmby, nmbx, 2), dtype=np.int64)
    lv = np.zeros(16, dtype=np.int64)
    pred16 = np.zeros(16, dtype=np.int64)
    rec16 = np.zeros(16, dtype=np.int64)
    pred_y = np.zeros(256, dtype=np.int64)
    pred_c = np.zeros((2, 64), dtype=np.int64)
    tmp64 = np.zeros(64, dtype=np.int64)
    fbuf = np.zeros(16, dtype=np.float64)
    for my in range(nmby):
        for mx in range(nmbx):
            if ds[D_OVERREAD] > 0:
                return ERR_TRUNCATED
            y0 = 16 * my
            x0 = 16 * mx
            cy0 = 8 * my
            cx0 = 8 * mx
            mode = MB_INTRA
            if not is_intra:
                if dec_bit(ds, buf, probs, CTX_SKIP + neighbour_count(mbtype, my, mx, MB_SKIP)):
                    mode = MB_SKIP
                elif (
                    dec_bit(
                        ds, buf, probs, CTX_INTRA_MB + neighbour_count(mbtype, my, mx, MB_INTRA)
                    )
                    == 0
                ):
                    mode = MB_INTER
            if mode == MB_INTRA:
                mv[my, mx, 0] = 0
                mv[my, mx, 1] = 0
                mvdabs[my, mx, 0] = 0
                mvdabs[my, mx, 1] = 0
                for b in range(16):
                    py = y0 + 4 * (b // 4)
                    px = x0 + 4 * (b % 4)
                    gby = py // 4
                    gbx = px // 4
                    pm = pred_intra_mode(imode, gby, gbx)
                    if dec_bit(ds, buf, probs, CTX_I4_FLAG):
                        m = pm
                    else:
                        rr = dec_bit(ds, buf, probs, CTX_I4_REM)
                        if rr:
                            rr += dec_bit(ds, buf, probs, CTX_I4_REM + 1)
                        m = rr if rr < pm else rr + 1
                    imode[gby, gbx] = m
                    if not intra4_pred(rec_y, py, px, m, pred16):
                        return ERR_INTRA_MODE
                    nz, err = dec_block(
                        ds, buf, probs, lv, CAT_LUMA_INTRA, cbf_inc(nz_y, gby, gbx)
                    )
                    if err != 0:
                        return err
                    nz_y[gby, gbx] = nz
                    reconstruct_block(pred16, lv, tab[lvl_y[gby, gbx], 0], fbuf, rec16)
                    for r in range(4):
                        for c in range(4):
                            rec_y[py + r, px + c] = rec16[4 * r + c]
                cm = 0
                while cm < 3 and dec_bit(ds, buf, probs, CTX_CHROMA_MODE + cm) == 1:
                    cm += 1
                if not chroma8_pred(rec_c[0], cy0, cx0, cm, pred_c[0]):
                    return ERR_INTRA_MODE
                chroma8_pred(rec_c[1], cy0, cx0, cm, pred_c[1])
                ccat = CAT_CHROMA_INTRA
                inter = 0
            else:
                for r in range(4):
                    for c in range(4):
                        imode[y0 // 4 + r, x0 // 4 + c] = -1
                mvp_y, mvp_x = mv_predictor(mbtype, mv, my, mx)
                if mode == MB_SKIP:
                    mvy, mvx = mvp_y, mvp_x
                    mvdabs[my, mx, 0] = 0
                    mvdabs[my, mx, 1] = 0
                else:
                    dy, err = dec_mvd(ds, buf, probs, 0, mvd_inc(mvdabs, my, mx, 0))
                    if err != 0:
                        return err
                    dx, err = dec_mvd(ds, buf, probs, 1, mvd_inc(mvdabs, my, mx, 1))
                    if err != 0:
                        return err
                    mvy = mvp_y + dy
                    mvx = mvp_x + dx
                    if abs(mvy) > MAX_MV or abs(mvx) > MAX_MV:
                        return ERR_MV_RANGE
                    mvdabs[my, mx, 0] = abs(dy)
                    mvdabs[my, mx, 1] = abs(dx)
                mv[my, mx, 0] = mvy
                mv[my, mx, 1] = mvx
                mc_mb(ref_y, ref_c, y0, x0, mvy, mvx, pred_y, pred_c, tmp64)
                if mode == MB_SKIP:
                    for r in range(16):
                        for c in range(16):
                            rec_y[y0 + r, x0 + c] = pred_y[16 * r + c]
                    for comp in range(2):
                        for r in range(8):
                            for c in range(8):
                                rec_c[comp, cy0 + r, cx0 + c] = pred_c[comp, 8 * r + c]
                    for r in range(4):
                        for c in range(4):
                            nz_y[y0 // 4 + r, x0 // 4 + c] = 0
                    for comp in range(2):
                        for r in range(2):
                            for c in range(2):
                                nz_c[comp, cy0 // 4 + r, cx0 // 4 + c] = 0
                    mbtype[my, mx] = MB_SKIP
                    continue
                for b in range(16):
                    by = b // 4
                    bx = b % 4
                    gby = y0 // 4 + by
                    gbx = x0 // 4 + bx
                    nz, err = dec_block(
                        ds, buf, probs, lv, CAT_LUMA_INTER, cbf_inc(nz_y, gby, gbx)
                    )
                    if err != 0:
                        return err
                    nz_y[gby, gbx] = nz
                    for r in range(4):
                        for c in range(4):
                            pred16[4 * r + c] = pred_y[16 * (4 * by + r) + 4 * bx + c]
                    reconstruct_block(pred16, lv, tab[lvl_y[gby, gbx], 0], fbuf, rec16)
                    for r in range(4):
                        for c in range(4):
                            rec_y[y0 + 4 * by + r, x0 + 4 * bx + c] = rec16[4 * r + c]
                ccat = CAT_CHROMA_INTER
                inter = 1
            coded = dec_bit(ds, buf, probs, CTX_CHROMA_CODED + inter)
            for k in range(8):
                comp = k // 4
                b = k % 4
                oy = 4 * (b // 2)
                ox = 4 * (b % 2)
                cby = cy0 // 4 + b // 2
                cbx = cx0 // 4 + b % 2
                if coded:
                    nz, err = dec_block(ds, buf, probs, lv, ccat, cbf_inc(nz_c[comp], cby, cbx))
                    if err != 0:
                        return err
                else:
                    nz = 0
                    for i in range(16):
                        lv[i] = 0
                nz_c[comp, cby, cbx] = nz
                for r in range(4):
                    for c in range(4):
                        pred16[4 * r + c] = pred_c[comp, 8 * (oy + r) + ox + c]
                reconstruct_block(pred16, lv, tab[lvl_c[cby, cbx], 1 + comp], fbuf, rec16)
                for r in range(4):
                    for c in range(4):
                        rec_c[comp, cy0 + oy + r, cx0 + ox + c] = rec16[4 * r + c]
            mbtype[my, mx] = mode
    if ds[D_OVERREAD] > 0:
        return ERR_TRUNCATED
    deblock_frame(rec_y, rec_c, mbtype, mv, nz_y, lvl_y, lvl_c, qps)
    return ERR_OK


