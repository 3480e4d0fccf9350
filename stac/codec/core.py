"""Frame-level encoder and decoder loops of the codec (numba): macroblock mode decision,
residual coding with per-block quantisation steps, and the macroblock syntax.

Macroblocks (16x16 luma, 2 x 8x8 chroma) are coded in raster order. Intra macroblocks use
4x4 luma intra prediction (mode predicted from the left/top blocks) and 8x8 chroma intra
prediction; inter macroblocks one quarter-pel motion vector coded against the H.264 median
predictor; skipped macroblocks reuse the predicted vector with no residual. The encoder picks
the mode of least D + lambda * R (SSD, estimated bits from the live context state) and
reconstructs exactly as `decode_mbs` does (closed loop); both end with the same in-loop
deblocking filter (`stac.codec.deblock`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from stac.codec.deblock import deblock_frame
from stac.codec.predict import (
    MODE_DC,
    N_INTRA_MODES,
    chroma8_pred,
    fdct4,
    idct4,
    intra4_pred,
    motion_compensate,
    motion_search,
)
from stac.codec.quant import DEADZONE_INTER, DEADZONE_INTRA
from stac.codec.rangecoder import (
    D_OVERREAD,
    cost_bit,
    dec_bit,
    enc_bit,
    enc_bits_used,
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
    ZIGZAG,
    cost_block,
    cost_mvd,
    dec_block,
    dec_mvd,
    enc_block,
    enc_mvd,
    mvd_ctx_inc,
)

MB_INTRA, MB_INTER, MB_SKIP = 0, 1, 2
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
def _all_zero(lv):
    for k in range(lv.shape[0]):
        for i in range(16):
            if lv[k, i] != 0:
                return False
    return True


@njit(cache=True)
def _cbf_inc(nz, by, bx):
    inc = 0
    if bx > 0:
        inc += nz[by, bx - 1]
    if by > 0:
        inc += nz[by - 1, bx]
    return inc


@njit(cache=True)
def _pred_intra_mode(imode, by, bx):
    ml = imode[by, bx - 1] if bx > 0 else -1
    mt = imode[by - 1, bx] if by > 0 else -1
    return min(ml if ml >= 0 else MODE_DC, mt if mt >= 0 else MODE_DC)


@njit(cache=True)
def _cost_intra_mode(probs, mode, pm, cost_table):
    if mode == pm:
        return cost_bit(probs, CTX_I4_FLAG, 1, cost_table)
    r = mode if mode < pm else mode - 1
    bits = cost_bit(probs, CTX_I4_FLAG, 0, cost_table)
    bits += cost_bit(probs, CTX_I4_REM, 1 if r > 0 else 0, cost_table)
    if r > 0:
        bits += cost_bit(probs, CTX_I4_REM + 1, 1 if r > 1 else 0, cost_table)
    return bits


@njit(cache=True)
def _cost_chroma_mode(probs, mode, cost_table):
    bits = 0.0
    for j in range(3):
        b = 1 if mode > j else 0
        bits += cost_bit(probs, CTX_CHROMA_MODE + j, b, cost_table)
        if b == 0:
            break
    return bits


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


# ---- the encoder ----------------------------------------------------------------------------


@njit(cache=True)
def _luma_block_src(plane, py, px, out):
    for r in range(4):
        for c in range(4):
            out[4 * r + c] = plane[py + r, px + c]


@njit(cache=True)
def _intra_luma(
    src,
    rec,
    y0,
    x0,
    tab,
    lvl_y,
    lam,
    probs,
    cost_table,
    imode,
    nz_y,
    lv_out,
    modes_out,
    sm_out,
    src16,
    pred16,
    best16,
    rec16,
    buf,
):
    """Code the 16 luma 4x4 blocks of an intra MB into `rec` (in place); returns (SSD, bits)."""
    lam_m = math.sqrt(lam)
    ssd = 0.0
    bits = 0.0
    for b in range(16):
        py = y0 + 4 * (b // 4)
        px = x0 + 4 * (b % 4)
        gby = py // 4
        gbx = px // 4
        _luma_block_src(src, py, px, src16)
        pm = _pred_intra_mode(imode, gby, gbx)
        best_mode = -1
        best_cost = 0.0
        for m in range(N_INTRA_MODES):
            if not intra4_pred(rec, py, px, m, pred16):
                continue
            sad = 0
            for i in range(16):
                sad += abs(src16[i] - pred16[i])
            cost = sad + lam_m * _cost_intra_mode(probs, m, pm, cost_table)
            if best_mode < 0 or cost < best_cost:
                best_cost = cost
                best_mode = m
                for i in range(16):
                    best16[i] = pred16[i]
        steps = tab[lvl_y[gby, gbx], 0]
        lv = lv_out[b]
        sm_out[b] = quantise_block(src16, best16, steps, DEADZONE_INTRA, lv, buf)
        reconstruct_block(best16, lv, steps, buf, rec16)
        for r in range(4):
            for c in range(4):
                rec[py + r, px + c] = rec16[4 * r + c]
                d = src16[4 * r + c] - rec16[4 * r + c]
                ssd += d * d
        modes_out[b] = best_mode
        imode[gby, gbx] = best_mode
        bits += _cost_intra_mode(probs, best_mode, pm, cost_table)
        bits += cost_block(probs, lv, CAT_LUMA_INTRA, _cbf_inc(nz_y, gby, gbx), cost_table)
        nz = 0
        for i in range(16):
            if lv[i] != 0:
                nz = 1
        nz_y[gby, gbx] = nz
    return ssd, bits


@njit(cache=True)
def _code_chroma(
    src_c,
    pred_c,
    tab,
    lvl_c,
    cy0,
    cx0,
    deadzone,
    inter,
    lv_out,
    rec_out,
    sm_out,
    src16,
    pred16,
    rec16,
    buf,
):
    """Quantise and reconstruct the 2 x 4 chroma blocks of a MB given its 2 x 8x8 prediction;
    inter blocks are decimated per component (JM rule). Returns SSD."""
    ssd = 0.0
    for comp in range(2):
        score = 0
        for b in range(4):
            oy = 4 * (b // 2)
            ox = 4 * (b % 2)
            for r in range(4):
                for c in range(4):
                    src16[4 * r + c] = src_c[comp, cy0 + oy + r, cx0 + ox + c]
                    pred16[4 * r + c] = pred_c[comp, 8 * (oy + r) + ox + c]
            steps = tab[lvl_c[(cy0 + oy) // 4, (cx0 + ox) // 4], 1 + comp]
            sm_out[comp * 4 + b] = quantise_block(
                src16, pred16, steps, deadzone, lv_out[comp * 4 + b], buf
            )
            score += decimation_score(lv_out[comp * 4 + b])
        if inter and score < 7:
            for b in range(4):
                for i in range(16):
                    lv_out[comp * 4 + b, i] = 0
        for b in range(4):
            oy = 4 * (b // 2)
            ox = 4 * (b % 2)
            for r in range(4):
                for c in range(4):
                    src16[4 * r + c] = src_c[comp, cy0 + oy + r, cx0 + ox + c]
                    pred16[4 * r + c] = pred_c[comp, 8 * (oy + r) + ox + c]
            steps = tab[lvl_c[(cy0 + oy) // 4, (cx0 + ox) // 4], 1 + comp]
            reconstruct_block(pred16, lv_out[comp * 4 + b], steps, buf, rec16)
            for r in range(4):
                for c in range(4):
                    v = rec16[4 * r + c]
                    rec_out[comp, 8 * (oy + r) + ox + c] = v
                    d = src16[4 * r + c] - v
                    ssd += d * d
    return ssd


@njit(cache=True)
def _cost_chroma_blocks(probs, lv, cat, nz_c, cy0, cx0, inter, cost_table):
    coded = False
    for k in range(8):
        for i in range(16):
            if lv[k, i] != 0:
                coded = True
    bits = cost_bit(probs, CTX_CHROMA_CODED + inter, 1 if coded else 0, cost_table)
    if coded:
        for k in range(8):
            comp = k // 4
            b = k % 4
            bits += cost_block(
                probs,
                lv[k],
                cat,
                _cbf_inc(nz_c[comp], cy0 // 4 + b // 2, cx0 // 4 + b % 2),
                cost_table,
            )
    return bits


@njit(cache=True)
def _inter_luma(
    src, pred_y, y0, x0, tab, lvl_y, lv_out, rec_out, sm_out, src16, pred16, rec16, buf, decimate
):
    """Quantise, decimate (per 8x8 and per MB, JM rule) and reconstruct the luma residual of
    an inter MB given its 16x16 prediction. Returns SSD."""
    score8 = np.zeros(4, dtype=np.int64)
    for b in range(16):
        by = b // 4
        bx = b % 4
        for r in range(4):
            for c in range(4):
                src16[4 * r + c] = src[y0 + 4 * by + r, x0 + 4 * bx + c]
                pred16[4 * r + c] = pred_y[16 * (4 * by + r) + 4 * bx + c]
        steps = tab[lvl_y[(y0 // 4) + by, (x0 // 4) + bx], 0]
        sm_out[b] = quantise_block(src16, pred16, steps, DEADZONE_INTER, lv_out[b], buf)
        score8[(by // 2) * 2 + bx // 2] += decimation_score(lv_out[b])
    total = 0
    for q in range(4):
        if decimate and score8[q] < 4:
            for b in range(16):
                if ((b // 4) // 2) * 2 + (b % 4) // 2 == q:
                    for i in range(16):
                        lv_out[b, i] = 0
        else:
            total += score8[q]
    if decimate and total < 6:
        for b in range(16):
            for i in range(16):
                lv_out[b, i] = 0
    ssd = 0.0
    for b in range(16):
        by = b // 4
        bx = b % 4
        for r in range(4):
            for c in range(4):
                src16[4 * r + c] = src[y0 + 4 * by + r, x0 + 4 * bx + c]
                pred16[4 * r + c] = pred_y[16 * (4 * by + r) + 4 * bx + c]
        steps = tab[lvl_y[(y0 // 4) + by, (x0 // 4) + bx], 0]
        reconstruct_block(pred16, lv_out[b], steps, buf, rec16)
        for r in range(4):
            for c in range(4):
                v = rec16[4 * r + c]
                rec_out[16 * (4 * by + r) + 4 * bx + c] = v
                d = src16[4 * r + c] - v
                ssd += d * d
    return ssd


@njit(cache=True)
def _mc_mb(ref_y, ref_c, y0, x0, mvy, mvx, pred_y, pred_c, tmp64):
    motion_compensate(ref_y, y0, x0, 16, mvy, mvx, 2, pred_y)
    for comp in range(2):
        motion_compensate(ref_c[comp], y0 // 2, x0 // 2, 8, mvy, mvx, 3, tmp64)
        for i in range(64):
            pred_c[comp, i] = tmp64[i]


@njit(cache=True)
def _ssd_pred(src, src_c, y0, x0, pred_y, pred_c):
    s = 0.0
    for r in range(16):
        for c in range(16):
            d = np.int64(src[y0 + r, x0 + c]) - pred_y[16 * r + c]
            s += d * d
    for comp in range(2):
        for r in range(8):
            for c in range(8):
                d = np.int64(src_c[comp, y0 // 2 + r, x0 // 2 + c]) - pred_c[comp, 8 * r + c]
                s += d * d
    return s


@njit(cache=True)
def _neighbour_count(mbtype, my, mx, kind):
    n = 0
    if mx > 0 and mbtype[my, mx - 1] == kind:
        n += 1
    if my > 0 and mbtype[my - 1, mx] == kind:
        n += 1
    return n


@njit(cache=True)
def _mvd_inc(mvdabs, my, mx, comp):
    s = 0
    if mx > 0:
        s += mvdabs[my, mx - 1, comp]
    if my > 0:
        s += mvdabs[my - 1, mx, comp]
    return mvd_ctx_inc(s)


@njit(cache=True)
def _spread_bits(bits_blk, y0, x0, bits):
    share = bits / 16.0
    for r in range(4):
        for c in range(4):
            bits_blk[y0 // 4 + r, x0 // 4 + c] += share


@njit(cache=True)
def encode_mbs(
    es,
    out,
    probs,
    cost_table,
    src_y,
    src_c,
    ref_y,
    ref_c,
    rec_y,
    rec_c,
    tab,
    lvl_y,
    lvl_c,
    lam_mb,
    is_intra,
    search_range,
    subpel,
    bits_blk,
    size_blk,
    mbtype,
    qps,
):
    """Encode all macroblocks of a frame; writes the reconstruction into rec_y/rec_c, the real
    bits spent per luma 4x4 block into bits_blk (MB overhead spread evenly over its 16 blocks,
    chroma bits over the 4 luma blocks they cover), the size model of the coded coefficients
    per luma block into size_blk (chroma likewise) and each MB's mode into mbtype."""
    h, w = src_y.shape
    nmby = h // 16
    nmbx = w // 16
    nz_y = np.zeros((h // 4, w // 4), dtype=np.int64)
    nz_c = np.zeros((2, h // 8, w // 8), dtype=np.int64)
    imode = np.full((h // 4, w // 4), -1, dtype=np.int64)
    mv = np.zeros((nmby, nmbx, 2), dtype=np.int64)
    mvdabs = np.zeros((nmby, nmbx, 2), dtype=np.int64)
    cands = np.zeros((4, 2), dtype=np.int64)
    lv_i = np.zeros((16, 16), dtype=np.int64)
    lvc_i = np.zeros((8, 16), dtype=np.int64)
    lv_p = np.zeros((16, 16), dtype=np.int64)
    lvc_p = np.zeros((8, 16), dtype=np.int64)
    modes_i = np.zeros(16, dtype=np.int64)
    rec_mb_i = np.zeros(256, dtype=np.int64)
    recc_i = np.zeros((2, 64), dtype=np.int64)
    recc_p = np.zeros((2, 64), dtype=np.int64)
    rec_mb_p = np.zeros(256, dtype=np.int64)
    pred_y = np.zeros(256, dtype=np.int64)
    pred_c = np.zeros((2, 64), dtype=np.int64)
    skip_y = np.zeros(256, dtype=np.int64)
    skip_c = np.zeros((2, 64), dtype=np.int64)
    tmp64 = np.zeros(64, dtype=np.int64)
    src16 = np.zeros(16, dtype=np.int64)
    pred16 = np.zeros(16, dtype=np.int64)
    best16 = np.zeros(16, dtype=np.int64)
    rec16 = np.zeros(16, dtype=np.int64)
    buf = np.zeros(16, dtype=np.float64)
    sm_i = np.zeros(16)
    smc_i = np.zeros(8)
    sm_p = np.zeros(16)
    smc_p = np.zeros(8)
    for my in range(nmby):
        for mx in range(nmbx):
            y0 = 16 * my
            x0 = 16 * mx
            cy0 = 8 * my
            cx0 = 8 * mx
            lam = lam_mb[my, mx]
            lam_m = math.sqrt(lam)
            mvp_y = 0
            mvp_x = 0
            mvy = 0
            mvx = 0
            mode = MB_INTRA
            early_skip = False
            nz_save_y = nz_y[y0 // 4 : y0 // 4 + 4, x0 // 4 : x0 // 4 + 4].copy()
            if not is_intra:
                # -- early skip (as x264): the skip residual quantises to nothing --
                mvp_y, mvp_x = mv_predictor(mbtype, mv, my, mx)
                _mc_mb(ref_y, ref_c, y0, x0, mvp_y, mvp_x, skip_y, skip_c, tmp64)
                _inter_luma(
                    src_y,
                    skip_y,
                    y0,
                    x0,
                    tab,
                    lvl_y,
                    lv_p,
                    rec_mb_p,
                    sm_p,
                    src16,
                    pred16,
                    rec16,
                    buf,
                    False,
                )
                _code_chroma(
                    src_c,
                    skip_c,
                    tab,
                    lvl_c,
                    cy0,
                    cx0,
                    DEADZONE_INTER,
                    False,
                    lvc_p,
                    recc_p,
                    smc_p,
                    src16,
                    pred16,
                    rec16,
                    buf,
                )
                early_skip = _all_zero(lv_p) and _all_zero(lvc_p)
                if early_skip:
                    mode = MB_SKIP
            if not early_skip:
                # -- intra candidate (luma written into rec_y in place, then saved) --
                ssd_i, bits_i = _intra_luma(
                    src_y,
                    rec_y,
                    y0,
                    x0,
                    tab,
                    lvl_y,
                    lam,
                    probs,
                    cost_table,
                    imode,
                    nz_y,
                    lv_i,
                    modes_i,
                    sm_i,
                    src16,
                    pred16,
                    best16,
                    rec16,
                    buf,
                )
                for r in range(16):
                    for c in range(16):
                        rec_mb_i[16 * r + c] = rec_y[y0 + r, x0 + c]
                best_cm = 0
                best_cost = -1.0
                for m in range(N_INTRA_MODES):
                    ok = chroma8_pred(rec_c[0], cy0, cx0, m, pred_c[0])
                    ok = ok and chroma8_pred(rec_c[1], cy0, cx0, m, pred_c[1])
                    if not ok:
                        continue
                    sad = 0
                    for comp in range(2):
                        for r in range(8):
                            for c in range(8):
                                sad += abs(
                                    np.int64(src_c[comp, cy0 + r, cx0 + c])
                                    - pred_c[comp, 8 * r + c]
                                )
                    cost = sad + lam_m * _cost_chroma_mode(probs, m, cost_table)
                    if best_cost < 0 or cost < best_cost:
                        best_cost = cost
                        best_cm = m
                chroma8_pred(rec_c[0], cy0, cx0, best_cm, pred_c[0])
                chroma8_pred(rec_c[1], cy0, cx0, best_cm, pred_c[1])
                ssd_i += _code_chroma(
                    src_c,
                    pred_c,
                    tab,
                    lvl_c,
                    cy0,
                    cx0,
                    DEADZONE_INTRA,
                    False,
                    lvc_i,
                    recc_i,
                    smc_i,
                    src16,
                    pred16,
                    rec16,
                    buf,
                )
                bits_i += _cost_chroma_mode(probs, best_cm, cost_table)
                bits_i += _cost_chroma_blocks(
                    probs, lvc_i, CAT_CHROMA_INTRA, nz_c, cy0, cx0, 0, cost_table
                )
                if not is_intra:
                    bits_i += cost_bit(
                        probs, CTX_SKIP + _neighbour_count(mbtype, my, mx, MB_SKIP), 0, cost_table
                    )
                    bits_i += cost_bit(
                        probs,
                        CTX_INTRA_MB + _neighbour_count(mbtype, my, mx, MB_INTRA),
                        1,
                        cost_table,
                    )
                    j_intra = ssd_i + lam * bits_i
                    # -- skip candidate --
                    ssd_s = _ssd_pred(src_y, src_c, y0, x0, skip_y, skip_c)
                    bits_s = cost_bit(
                        probs, CTX_SKIP + _neighbour_count(mbtype, my, mx, MB_SKIP), 1, cost_table
                    )
                    j_skip = ssd_s + lam * bits_s
                    # -- inter candidate --
                    n_c = 0
                    cands[n_c, 0] = mvp_y
                    cands[n_c, 1] = mvp_x
                    n_c += 1
                    if mx > 0:
                        cands[n_c, 0] = mv[my, mx - 1, 0]
                        cands[n_c, 1] = mv[my, mx - 1, 1]
                        n_c += 1
                    if my > 0:
                        cands[n_c, 0] = mv[my - 1, mx, 0]
                        cands[n_c, 1] = mv[my - 1, mx, 1]
                        n_c += 1
                        if mx + 1 < nmbx:
                            cands[n_c, 0] = mv[my - 1, mx + 1, 0]
                            cands[n_c, 1] = mv[my - 1, mx + 1, 1]
                            n_c += 1
                    mvy, mvx = motion_search(
                        src_y,
                        ref_y,
                        y0,
                        x0,
                        mvp_y,
                        mvp_x,
                        cands,
                        n_c,
                        search_range,
                        lam_m,
                        subpel,
                        pred_y,
                    )
                    _mc_mb(ref_y, ref_c, y0, x0, mvy, mvx, pred_y, pred_c, tmp64)
                    ssd_p = _inter_luma(
                        src_y,
                        pred_y,
                        y0,
                        x0,
                        tab,
                        lvl_y,
                        lv_p,
                        rec_mb_p,
                        sm_p,
                        src16,
                        pred16,
                        rec16,
                        buf,
                        True,
                    )
                    ssd_p += _code_chroma(
                        src_c,
                        pred_c,
                        tab,
                        lvl_c,
                        cy0,
                        cx0,
                        DEADZONE_INTER,
                        True,
                        lvc_p,
                        recc_p,
                        smc_p,
                        src16,
                        pred16,
                        rec16,
                        buf,
                    )
                    bits_p = cost_bit(
                        probs, CTX_SKIP + _neighbour_count(mbtype, my, mx, MB_SKIP), 0, cost_table
                    )
                    bits_p += cost_bit(
                        probs,
                        CTX_INTRA_MB + _neighbour_count(mbtype, my, mx, MB_INTRA),
                        0,
                        cost_table,
                    )
                    bits_p += cost_mvd(
                        probs, 0, mvy - mvp_y, _mvd_inc(mvdabs, my, mx, 0), cost_table
                    )
                    bits_p += cost_mvd(
                        probs, 1, mvx - mvp_x, _mvd_inc(mvdabs, my, mx, 1), cost_table
                    )
                    for b in range(16):
                        gby = y0 // 4 + b // 4
                        gbx = x0 // 4 + b % 4
                        bits_p += cost_block(
                            probs, lv_p[b], CAT_LUMA_INTER, _cbf_inc(nz_y, gby, gbx), cost_table
                        )
                    bits_p += _cost_chroma_blocks(
                        probs, lvc_p, CAT_CHROMA_INTER, nz_c, cy0, cx0, 1, cost_table
                    )
                    j_inter = ssd_p + lam * bits_p
                    if j_skip <= j_inter and j_skip <= j_intra:
                        mode = MB_SKIP
                    elif j_inter <= j_intra:
                        mode = MB_INTER
            # -- commit the reconstruction of the chosen mode --
            if mode == MB_INTRA:
                for comp in range(2):
                    for r in range(8):
                        for c in range(8):
                            rec_c[comp, cy0 + r, cx0 + c] = recc_i[comp, 8 * r + c]
            else:
                for r in range(4):
                    for c in range(4):
                        imode[y0 // 4 + r, x0 // 4 + c] = -1
                src_rec = skip_y if mode == MB_SKIP else rec_mb_p
                src_rc = skip_c if mode == MB_SKIP else recc_p
                for r in range(16):
                    for c in range(16):
                        rec_y[y0 + r, x0 + c] = src_rec[16 * r + c]
                for comp in range(2):
                    for r in range(8):
                        for c in range(8):
                            rec_c[comp, cy0 + r, cx0 + c] = src_rc[comp, 8 * r + c]
            nz_y[y0 // 4 : y0 // 4 + 4, x0 // 4 : x0 // 4 + 4] = nz_save_y
            if mode != MB_SKIP:
                sml = sm_i if mode == MB_INTRA else sm_p
                smc = smc_i if mode == MB_INTRA else smc_p
                for b in range(16):
                    size_blk[y0 // 4 + b // 4, x0 // 4 + b % 4] += sml[b]
                for k in range(8):
                    b = k % 4
                    for r in range(2):
                        for c in range(2):
                            size_blk[y0 // 4 + 2 * (b // 2) + r, x0 // 4 + 2 * (b % 2) + c] += (
                                smc[k] / 4.0
                            )
            # -- write the macroblock --
            start = enc_bits_used(es)
            if not is_intra:
                enc_bit(
                    es,
                    out,
                    probs,
                    CTX_SKIP + _neighbour_count(mbtype, my, mx, MB_SKIP),
                    1 if mode == MB_SKIP else 0,
                )
                if mode != MB_SKIP:
                    enc_bit(
                        es,
                        out,
                        probs,
                        CTX_INTRA_MB + _neighbour_count(mbtype, my, mx, MB_INTRA),
                        1 if mode == MB_INTRA else 0,
                    )
            if mode == MB_SKIP:
                mv[my, mx, 0] = mvp_y
                mv[my, mx, 1] = mvp_x
                mvdabs[my, mx, 0] = 0
                mvdabs[my, mx, 1] = 0
                for r in range(4):
                    for c in range(4):
                        nz_y[y0 // 4 + r, x0 // 4 + c] = 0
                for comp in range(2):
                    for r in range(2):
                        for c in range(2):
                            nz_c[comp, cy0 // 4 + r, cx0 // 4 + c] = 0
                mbtype[my, mx] = MB_SKIP
                _spread_bits(bits_blk, y0, x0, enc_bits_used(es) - start)
                continue
            if mode == MB_INTRA:
                mv[my, mx, 0] = 0
                mv[my, mx, 1] = 0
                mvdabs[my, mx, 0] = 0
                mvdabs[my, mx, 1] = 0
                for b in range(16):
                    gby = y0 // 4 + b // 4
                    gbx = x0 // 4 + b % 4
                    t0 = enc_bits_used(es)
                    pm = _pred_intra_mode(imode, gby, gbx)
                    m = modes_i[b]
                    imode[gby, gbx] = m
                    if m == pm:
                        enc_bit(es, out, probs, CTX_I4_FLAG, 1)
                    else:
                        enc_bit(es, out, probs, CTX_I4_FLAG, 0)
                        rr = m if m < pm else m - 1
                        enc_bit(es, out, probs, CTX_I4_REM, 1 if rr > 0 else 0)
                        if rr > 0:
                            enc_bit(es, out, probs, CTX_I4_REM + 1, 1 if rr > 1 else 0)
                    nz_y[gby, gbx] = enc_block(
                        es, out, probs, lv_i[b], CAT_LUMA_INTRA, _cbf_inc(nz_y, gby, gbx)
                    )
                    bits_blk[gby, gbx] += enc_bits_used(es) - t0
                t0 = enc_bits_used(es)
                for j in range(3):
                    bb = 1 if best_cm > j else 0
                    enc_bit(es, out, probs, CTX_CHROMA_MODE + j, bb)
                    if bb == 0:
                        break
                _spread_bits(bits_blk, y0, x0, enc_bits_used(es) - t0)
                lvc = lvc_i
                ccat = CAT_CHROMA_INTRA
                inter = 0
            else:
                t0 = enc_bits_used(es)
                dy = mvy - mvp_y
                dx = mvx - mvp_x
                enc_mvd(es, out, probs, 0, dy, _mvd_inc(mvdabs, my, mx, 0))
                enc_mvd(es, out, probs, 1, dx, _mvd_inc(mvdabs, my, mx, 1))
                mv[my, mx, 0] = mvy
                mv[my, mx, 1] = mvx
                mvdabs[my, mx, 0] = abs(dy)
                mvdabs[my, mx, 1] = abs(dx)
                _spread_bits(bits_blk, y0, x0, enc_bits_used(es) - t0)
                for b in range(16):
                    gby = y0 // 4 + b // 4
                    gbx = x0 // 4 + b % 4
                    t0 = enc_bits_used(es)
                    nz_y[gby, gbx] = enc_block(
                        es, out, probs, lv_p[b], CAT_LUMA_INTER, _cbf_inc(nz_y, gby, gbx)
                    )
                    bits_blk[gby, gbx] += enc_bits_used(es) - t0
                lvc = lvc_p
                ccat = CAT_CHROMA_INTER
                inter = 1
            coded = 0
            for k in range(8):
                for i in range(16):
                    if lvc[k, i] != 0:
                        coded = 1
            t0 = enc_bits_used(es)
            enc_bit(es, out, probs, CTX_CHROMA_CODED + inter, coded)
            _spread_bits(bits_blk, y0, x0, enc_bits_used(es) - t0)
            for k in range(8):
                comp = k // 4
                b = k % 4
                cby = cy0 // 4 + b // 2
                cbx = cx0 // 4 + b % 2
                if coded:
                    t0 = enc_bits_used(es)
                    nz_c[comp, cby, cbx] = enc_block(
                        es, out, probs, lvc[k], ccat, _cbf_inc(nz_c[comp], cby, cbx)
                    )
                    share = (enc_bits_used(es) - t0) / 4.0
                    for r in range(2):
                        for c in range(2):
                            bits_blk[2 * cby + r, 2 * cbx + c] += share
                else:
                    nz_c[comp, cby, cbx] = 0
            mbtype[my, mx] = mode
    deblock_frame(rec_y, rec_c, mbtype, mv, nz_y, lvl_y, lvl_c, qps)


# ---- the decoder ----------------------------------------------------------------------------


@njit(cache=True)
def decode_mbs(
    ds, buf, probs, is_intra, ref_y, ref_c, rec_y, rec_c, tab, lvl_y, lvl_c, mbtype, qps
):
    """Decode all macroblocks of a frame into rec_y/rec_c; returns an error code (0 = ok)."""
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
                if dec_bit(ds, buf, probs, CTX_SKIP + _neighbour_count(mbtype, my, mx, MB_SKIP)):
                    mode = MB_SKIP
                elif (
                    dec_bit(
                        ds, buf, probs, CTX_INTRA_MB + _neighbour_count(mbtype, my, mx, MB_INTRA)
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
                    pm = _pred_intra_mode(imode, gby, gbx)
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
                        ds, buf, probs, lv, CAT_LUMA_INTRA, _cbf_inc(nz_y, gby, gbx)
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
                    dy, err = dec_mvd(ds, buf, probs, 0, _mvd_inc(mvdabs, my, mx, 0))
                    if err != 0:
                        return err
                    dx, err = dec_mvd(ds, buf, probs, 1, _mvd_inc(mvdabs, my, mx, 1))
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
                _mc_mb(ref_y, ref_c, y0, x0, mvy, mvx, pred_y, pred_c, tmp64)
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
                        ds, buf, probs, lv, CAT_LUMA_INTER, _cbf_inc(nz_y, gby, gbx)
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
                    nz, err = dec_block(ds, buf, probs, lv, ccat, _cbf_inc(nz_c[comp], cby, cbx))
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


# ---- motion-compensated prediction alone (for the size model of residual frames) -------------


@njit(cache=True)
def predict_frame(src_y, ref_y, ref_c, lam_m, search_range, subpel, pred_y, pred_c):
    """Motion-compensated prediction of a whole frame (every MB inter, one MV per MB, found as
    `encode_mbs` finds it) into pred_y/pred_c; returns the MVs (nmby, nmbx, 2) in quarter-pels."""
    h, w = src_y.shape
    nmby = h // 16
    nmbx = w // 16
    mbtype = np.full((nmby, nmbx), MB_INTER, dtype=np.int64)
    mv = np.zeros((nmby, nmbx, 2), dtype=np.int64)
    cands = np.zeros((4, 2), dtype=np.int64)
    py = np.zeros(256, dtype=np.int64)
    pc = np.zeros((2, 64), dtype=np.int64)
    tmp64 = np.zeros(64, dtype=np.int64)
    for my in range(nmby):
        for mx in range(nmbx):
            y0 = 16 * my
            x0 = 16 * mx
            mvp_y, mvp_x = mv_predictor(mbtype, mv, my, mx)
            cands[0, 0] = mvp_y
            cands[0, 1] = mvp_x
            n_c = 1
            if mx > 0:
                cands[n_c, 0] = mv[my, mx - 1, 0]
                cands[n_c, 1] = mv[my, mx - 1, 1]
                n_c += 1
            if my > 0:
                cands[n_c, 0] = mv[my - 1, mx, 0]
                cands[n_c, 1] = mv[my - 1, mx, 1]
                n_c += 1
            mvy, mvx = motion_search(
                src_y, ref_y, y0, x0, mvp_y, mvp_x, cands, n_c, search_range, lam_m, subpel, py
            )
            mv[my, mx, 0] = mvy
            mv[my, mx, 1] = mvx
            _mc_mb(ref_y, ref_c, y0, x0, mvy, mvx, py, pc, tmp64)
            for r in range(16):
                for c in range(16):
                    pred_y[y0 + r, x0 + c] = py[16 * r + c]
            for comp in range(2):
                for r in range(8):
                    for c in range(8):
                        pred_c[comp, y0 // 2 + r, x0 // 2 + c] = pc[comp, 8 * r + c]
    return mv
