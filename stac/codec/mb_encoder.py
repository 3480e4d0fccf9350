"""Encoder layer of the codec's macroblock loop (numba): mode decision (intra 4x4, inter
with one quarter-pel vector, skip) by least D + lambda * R with bits estimated from the live
context state, motion estimation, and writing each macroblock's syntax. The encoder
reconstructs exactly as `mb_decoder.decode_mbs` does (closed loop); both end with the same
in-loop deblocking filter.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from stac.codec.deblock import deblock_frame
from stac.codec.mb_common import (
    MB_INTER,
    MB_INTRA,
    MB_SKIP,
    all_zero,
    cbf_inc,
    decimation_score,
    mc_mb,
    mv_predictor,
    mvd_inc,
    neighbour_count,
    pred_intra_mode,
    quantise_block,
    reconstruct_block,
    set_skip,
)
from stac.codec.predict import (
    N_INTRA_MODES,
    chroma8_pred,
    intra4_pred,
    motion_search,
)
from stac.codec.quant import DEADZONE_INTER, DEADZONE_INTRA
from stac.codec.rangecoder import (
    cost_bit,
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
    cost_block,
    cost_mvd,
    enc_block,
    enc_mvd,
)


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
    want_bits,
):
    """Code the 16 luma 4x4 blocks of an intra MB into `rec` (in place); returns (SSD, bits)
    (bits 0 unless `want_bits`: an intra frame has no mode decision that needs them)."""
    lam_m = math.sqrt(lam)
    ssd = 0.0
    bits = 0.0
    for b in range(16):
        py = y0 + 4 * (b // 4)
        px = x0 + 4 * (b % 4)
        gby = py // 4
        gbx = px // 4
        _luma_block_src(src, py, px, src16)
        pm = pred_intra_mode(imode, gby, gbx)
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
        if want_bits:
            bits += _cost_intra_mode(probs, best_mode, pm, cost_table)
            bits += cost_block(probs, lv, CAT_LUMA_INTRA, cbf_inc(nz_y, gby, gbx), cost_table)
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
                cbf_inc(nz_c[comp], cy0 // 4 + b // 2, cx0 // 4 + b % 2),
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
def _code_inter(ctx, inp, pred_y, pred_c, y0, x0, decimate, lv, lvc, rec_y, rec_c, sm, smc,
                work):
    """Quantise and reconstruct the luma and chroma residual of an inter MB given its
    motion-compensated prediction (`decimate`: JM's zeroing of sparse blocks, off for the
    skip test); `work` holds the 4x4 scratch buffers. Returns SSD."""
    src16, pred16, rec16, buf = work
    ssd = _inter_luma(inp.src_y, pred_y, y0, x0, ctx.tab, ctx.lvl_y, lv, rec_y, sm, src16,
                      pred16, rec16, buf, decimate)
    ssd += _code_chroma(inp.src_c, pred_c, ctx.tab, ctx.lvl_c, y0 // 2, x0 // 2,
                        DEADZONE_INTER, decimate, lvc, rec_c, smc, src16, pred16, rec16, buf)
    return ssd


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
def _spread_bits(bits_blk, y0, x0, bits):
    share = bits / 16.0
    for r in range(4):
        for c in range(4):
            bits_blk[y0 // 4 + r, x0 // 4 + c] += share


@njit(cache=True)
def encode_mbs(es, out, probs, cost_table, ctx, inp, is_intra, search_range, subpel):
    """Encode all macroblocks of a frame; writes the reconstruction into rec_y/rec_c, the real
    bits spent per luma 4x4 block into bits_blk (MB overhead spread evenly over its 16 blocks,
    chroma bits over the 4 luma blocks they cover), the size model of the coded coefficients
    per luma block into size_blk (chroma likewise) and each MB's mode into mbtype.
    `ctx` is the frame's `FrameContext`, `inp` its `EncoderInputs`."""
    src_y, src_c, lam_mb, bits_blk, size_blk = inp
    ref_y, ref_c, rec_y, rec_c, tab, lvl_y, lvl_c, mbtype, qps = ctx
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
    work = (src16, pred16, rec16, buf)
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
                mc_mb(ref_y, ref_c, y0, x0, mvp_y, mvp_x, skip_y, skip_c, tmp64)
                _code_inter(ctx, inp, skip_y, skip_c, y0, x0, False, lv_p, lvc_p, rec_mb_p,
                            recc_p, sm_p, smc_p, work)
                early_skip = all_zero(lv_p) and all_zero(lvc_p)
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
                    not is_intra,
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
                if not is_intra:  # the intra candidate's rate, for the mode decision
                    bits_i += _cost_chroma_mode(probs, best_cm, cost_table)
                    bits_i += _cost_chroma_blocks(
                        probs, lvc_i, CAT_CHROMA_INTRA, nz_c, cy0, cx0, 0, cost_table
                    )
                    bits_i += cost_bit(
                        probs, CTX_SKIP + neighbour_count(mbtype, my, mx, MB_SKIP), 0, cost_table
                    )
                    bits_i += cost_bit(
                        probs,
                        CTX_INTRA_MB + neighbour_count(mbtype, my, mx, MB_INTRA),
                        1,
                        cost_table,
                    )
                    j_intra = ssd_i + lam * bits_i
                    # -- skip candidate --
                    ssd_s = _ssd_pred(src_y, src_c, y0, x0, skip_y, skip_c)
                    bits_s = cost_bit(
                        probs, CTX_SKIP + neighbour_count(mbtype, my, mx, MB_SKIP), 1, cost_table
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
                    mc_mb(ref_y, ref_c, y0, x0, mvy, mvx, pred_y, pred_c, tmp64)
                    ssd_p = _code_inter(ctx, inp, pred_y, pred_c, y0, x0, True, lv_p, lvc_p,
                                        rec_mb_p, recc_p, sm_p, smc_p, work)
                    bits_p = cost_bit(
                        probs, CTX_SKIP + neighbour_count(mbtype, my, mx, MB_SKIP), 0, cost_table
                    )
                    bits_p += cost_bit(
                        probs,
                        CTX_INTRA_MB + neighbour_count(mbtype, my, mx, MB_INTRA),
                        0,
                        cost_table,
                    )
                    bits_p += cost_mvd(
                        probs, 0, mvy - mvp_y, mvd_inc(mvdabs, my, mx, 0), cost_table
                    )
                    bits_p += cost_mvd(
                        probs, 1, mvx - mvp_x, mvd_inc(mvdabs, my, mx, 1), cost_table
                    )
                    for b in range(16):
                        gby = y0 // 4 + b // 4
                        gbx = x0 // 4 + b % 4
                        bits_p += cost_block(
                            probs, lv_p[b], CAT_LUMA_INTER, cbf_inc(nz_y, gby, gbx), cost_table
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
                    CTX_SKIP + neighbour_count(mbtype, my, mx, MB_SKIP),
                    1 if mode == MB_SKIP else 0,
                )
                if mode != MB_SKIP:
                    enc_bit(
                        es,
                        out,
                        probs,
                        CTX_INTRA_MB + neighbour_count(mbtype, my, mx, MB_INTRA),
                        1 if mode == MB_INTRA else 0,
                    )
            if mode == MB_SKIP:
                set_skip(mv, mvdabs, nz_y, nz_c, my, mx, mvp_y, mvp_x)
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
                    pm = pred_intra_mode(imode, gby, gbx)
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
                        es, out, probs, lv_i[b], CAT_LUMA_INTRA, cbf_inc(nz_y, gby, gbx)
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
                enc_mvd(es, out, probs, 0, dy, mvd_inc(mvdabs, my, mx, 0))
                enc_mvd(es, out, probs, 1, dx, mvd_inc(mvdabs, my, mx, 1))
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
                        es, out, probs, lv_p[b], CAT_LUMA_INTER, cbf_inc(nz_y, gby, gbx)
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
                        es, out, probs, lvc[k], ccat, cbf_inc(nz_c[comp], cby, cbx)
                    )
                    share = (enc_bits_used(es) - t0) / 4.0
                    for r in range(2):
                        for c in range(2):
                            bits_blk[2 * cby + r, 2 * cbx + c] += share
                else:
                    nz_c[comp, cby, cbx] = 0
            mbtype[my, mx] = mode
    deblock_frame(rec_y, rec_c, mbtype, mv, nz_y, lvl_y, lvl_c, qps)


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
            mc_mb(ref_y, ref_c, y0, x0, mvy, mvx, py, pc, tmp64)
            for r in range(16):
                for c in range(16):
                    pred_y[y0 + r, x0 + c] = py[16 * r + c]
            for comp in range(2):
                for r in range(8):
                    for c in range(8):
                        pred_c[comp, y0 // 2 + r, x0 // 2 + c] = pc[comp, 8 * r + c]
    return mv

