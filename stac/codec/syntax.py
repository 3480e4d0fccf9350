"""Syntax elements of the codec bitstream and their context modelling (numba).

Binarisations and context selection follow CABAC (H.264 §9.3) in simplified form: coded-block
flags with left/top neighbour contexts, a significance map with per-position `sig`/`last`
contexts, levels as a context-coded unary prefix (context from the counts of levels equal to
and greater than one so far) plus an Exp-Golomb bypass suffix, motion-vector differences with
contexts from the neighbours' MVD magnitudes. Each element has an encoder, a decoder and a
cost estimate (bits, from the current context state) for rate-distortion decisions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stac.codec.rangecoder import (
    cost_bit,
    cost_eg,
    dec_bit,
    dec_bypass,
    dec_eg,
    enc_bit,
    enc_bypass,
    enc_eg,
)

# Context index layout.
CTX_SKIP = 0  # 3: number of skipped neighbours
CTX_INTRA_MB = 3  # 3: number of intra neighbours
CTX_MVD = 6  # 2 components x 8: 3 "non-zero" + 5 unary magnitude
CTX_I4_FLAG = 22  # 1: intra 4x4 mode equals the predicted mode
CTX_I4_REM = 23  # 2: remaining mode bins
CTX_CHROMA_MODE = 25  # 3: chroma intra mode, truncated unary
CTX_LEVELMAP = 28  # 2 "same as predicted" + 1 sign + 5 unary magnitude
CTX_CHROMA_CODED = 36  # 2: intra / inter
CTX_CBF = 38  # 4 categories x 3
CTX_SIG = 50  # 4 categories x 15
CTX_LAST = 110  # 4 categories x 15
CTX_ABS = 170  # 4 categories x 10
N_CONTEXTS = 210

# Block categories: luma intra, luma inter, chroma intra, chroma inter.
CAT_LUMA_INTRA, CAT_LUMA_INTER, CAT_CHROMA_INTRA, CAT_CHROMA_INTER = 0, 1, 2, 3

ZIGZAG = np.array([0, 1, 4, 8, 5, 2, 3, 6, 9, 12, 13, 10, 7, 11, 14, 15], dtype=np.int64)
MAX_ABS_LEVEL = 1 << 20
MVD_UNARY = 8
MVD_EG_K = 3
# Decoder error codes (numba functions return them; `decoder.py` turns them into messages).
ERR_OK, ERR_TRUNCATED, ERR_LEVEL_RANGE, ERR_ESCAPE, ERR_MV_RANGE, ERR_INTRA_MODE = range(6)


@njit(cache=True)
def enc_block(es, out, probs, lv, cat, cbf_inc):
    """Encode one 4x4 block of quantised levels `lv` (raster order); returns its cbf (0/1).
    (With a dry encoder state the contexts adapt and nothing is written.)"""
    last = -1
    for i in range(16):
        if lv[ZIGZAG[i]] != 0:
            last = i
    if last < 0:
        enc_bit(es, out, probs, CTX_CBF + cat * 3 + cbf_inc, 0)
        return 0
    enc_bit(es, out, probs, CTX_CBF + cat * 3 + cbf_inc, 1)
    for i in range(15):
        sig = 1 if lv[ZIGZAG[i]] != 0 else 0
        enc_bit(es, out, probs, CTX_SIG + cat * 15 + i, sig)
        if sig:
            is_last = 1 if i == last else 0
            enc_bit(es, out, probs, CTX_LAST + cat * 15 + i, is_last)
            if is_last:
                break
    n_gt1 = 0
    n_eq1 = 0
    base = CTX_ABS + cat * 10
    for i in range(last, -1, -1):
        v = lv[ZIGZAG[i]]
        if v == 0:
            continue
        a = abs(v)
        ctx1 = base + (0 if n_gt1 > 0 else min(4, 1 + n_eq1))
        if a == 1:
            enc_bit(es, out, probs, ctx1, 0)
            n_eq1 += 1
        else:
            enc_bit(es, out, probs, ctx1, 1)
            ctx2 = base + 5 + min(4, n_gt1)
            m = a - 2
            j = 0
            while j < 13 and j < m:
                enc_bit(es, out, probs, ctx2, 1)
                j += 1
            if m < 13:
                enc_bit(es, out, probs, ctx2, 0)
            else:
                enc_eg(es, out, m - 13, 0)
            n_gt1 += 1
        enc_bypass(es, out, 1 if v < 0 else 0)
    return 1


@njit(cache=True)
def cost_block(probs, lv, cat, cbf_inc, cost_table):
    """Estimated bits of `enc_block` for the same arguments (context state unchanged)."""
    last = -1
    for i in range(16):
        if lv[ZIGZAG[i]] != 0:
            last = i
    if last < 0:
        return cost_bit(probs, CTX_CBF + cat * 3 + cbf_inc, 0, cost_table)
    bits = cost_bit(probs, CTX_CBF + cat * 3 + cbf_inc, 1, cost_table)
    for i in range(15):
        sig = 1 if lv[ZIGZAG[i]] != 0 else 0
        bits += cost_bit(probs, CTX_SIG + cat * 15 + i, sig, cost_table)
        if sig:
            is_last = 1 if i == last else 0
            bits += cost_bit(probs, CTX_LAST + cat * 15 + i, is_last, cost_table)
            if is_last:
                break
    n_gt1 = 0
    n_eq1 = 0
    base = CTX_ABS + cat * 10
    for i in range(last, -1, -1):
        v = lv[ZIGZAG[i]]
        if v == 0:
            continue
        a = abs(v)
        ctx1 = base + (0 if n_gt1 > 0 else min(4, 1 + n_eq1))
        bits += 1.0  # sign
        if a == 1:
            bits += cost_bit(probs, ctx1, 0, cost_table)
            n_eq1 += 1
        else:
            bits += cost_bit(probs, ctx1, 1, cost_table)
            ctx2 = base + 5 + min(4, n_gt1)
            m = a - 2
            bits += min(m, 13) * cost_bit(probs, ctx2, 1, cost_table)
            if m < 13:
                bits += cost_bit(probs, ctx2, 0, cost_table)
            else:
                bits += cost_eg(m - 13, 0)
            n_gt1 += 1
    return bits


@njit(cache=True)
def dec_block(ds, buf, probs, lv, cat, cbf_inc):
    """Decode one block into `lv` (raster order); returns (cbf, error code)."""
    for i in range(16):
        lv[i] = 0
    if dec_bit(ds, buf, probs, CTX_CBF + cat * 3 + cbf_inc) == 0:
        return 0, ERR_OK
    last = 15
    for i in range(15):
        if dec_bit(ds, buf, probs, CTX_SIG + cat * 15 + i):
            lv[ZIGZAG[i]] = 1
            if dec_bit(ds, buf, probs, CTX_LAST + cat * 15 + i):
                last = i
                break
    lv[ZIGZAG[last]] = 1
    n_gt1 = 0
    n_eq1 = 0
    base = CTX_ABS + cat * 10
    for i in range(last, -1, -1):
        if lv[ZIGZAG[i]] == 0:
            continue
        ctx1 = base + (0 if n_gt1 > 0 else min(4, 1 + n_eq1))
        if dec_bit(ds, buf, probs, ctx1) == 0:
            a = 1
            n_eq1 += 1
        else:
            ctx2 = base + 5 + min(4, n_gt1)
            m = 0
            while m < 13 and dec_bit(ds, buf, probs, ctx2) == 1:
                m += 1
            if m == 13:
                extra = dec_eg(ds, buf, 0)
                if extra < 0 or extra > MAX_ABS_LEVEL:
                    return 1, ERR_ESCAPE
                m += extra
            a = m + 2
            n_gt1 += 1
        lv[ZIGZAG[i]] = -a if dec_bypass(ds, buf) else a
    return 1, ERR_OK


@njit(cache=True)
def mvd_ctx_inc(s):
    return 0 if s < 3 else (1 if s <= 32 else 2)


@njit(cache=True)
def enc_mvd(es, out, probs, comp, v, inc):
    base = CTX_MVD + comp * 8
    if v == 0:
        enc_bit(es, out, probs, base + inc, 0)
        return
    enc_bit(es, out, probs, base + inc, 1)
    a = abs(v) - 1
    j = 0
    while j < MVD_UNARY and j < a:
        enc_bit(es, out, probs, base + 3 + min(j, 4), 1)
        j += 1
    if a < MVD_UNARY:
        enc_bit(es, out, probs, base + 3 + min(a, 4), 0)
    else:
        enc_eg(es, out, a - MVD_UNARY, MVD_EG_K)
    enc_bypass(es, out, 1 if v < 0 else 0)


@njit(cache=True)
def cost_mvd(probs, comp, v, inc, cost_table):
    base = CTX_MVD + comp * 8
    if v == 0:
        return cost_bit(probs, base + inc, 0, cost_table)
    bits = cost_bit(probs, base + inc, 1, cost_table) + 1.0
    a = abs(v) - 1
    for j in range(min(a, MVD_UNARY)):
        bits += cost_bit(probs, base + 3 + min(j, 4), 1, cost_table)
    if a < MVD_UNARY:
        bits += cost_bit(probs, base + 3 + min(a, 4), 0, cost_table)
    else:
        bits += cost_eg(a - MVD_UNARY, MVD_EG_K)
    return bits


@njit(cache=True)
def dec_mvd(ds, buf, probs, comp, inc):
    """Decode one MVD component; returns (value, error code)."""
    base = CTX_MVD + comp * 8
    if dec_bit(ds, buf, probs, base + inc) == 0:
        return 0, ERR_OK
    a = 0
    while a < MVD_UNARY and dec_bit(ds, buf, probs, base + 3 + min(a, 4)) == 1:
        a += 1
    if a == MVD_UNARY:
        extra = dec_eg(ds, buf, MVD_EG_K)
        if extra < 0 or extra > MAX_ABS_LEVEL:
            return 0, ERR_ESCAPE
        a += extra
    v = a + 1
    return (-v if dec_bypass(ds, buf) else v), ERR_OK


@njit(cache=True)
def _level_pred(lm, ry, rx):
    if rx > 0:
        return lm[ry, rx - 1]
    if ry > 0:
        return lm[ry - 1, rx]
    return -1


@njit(cache=True)
def enc_level_map(es, out, probs, lm):
    """Encode a region-level map: each level against its left (else top) neighbour."""
    for ry in range(lm.shape[0]):
        for rx in range(lm.shape[1]):
            v = lm[ry, rx]
            pred = _level_pred(lm, ry, rx)
            if pred < 0:
                enc_eg(es, out, v, 2)
                continue
            ctx = CTX_LEVELMAP + (1 if (ry > 0 and rx > 0 and lm[ry - 1, rx] == pred) else 0)
            if v == pred:
                enc_bit(es, out, probs, ctx, 0)
                continue
            enc_bit(es, out, probs, ctx, 1)
            d = v - pred
            enc_bit(es, out, probs, CTX_LEVELMAP + 2, 1 if d < 0 else 0)
            a = abs(d) - 1
            j = 0
            while j < 5 and j < a:
                enc_bit(es, out, probs, CTX_LEVELMAP + 3 + min(j, 4), 1)
                j += 1
            if a < 5:
                enc_bit(es, out, probs, CTX_LEVELMAP + 3 + min(a, 4), 0)
            else:
                enc_eg(es, out, a - 5, 1)


@njit(cache=True)
def dec_level_map(ds, buf, probs, lm, n_levels):
    """Decode a region-level map into `lm`; returns an error code (levels must be < n_levels)."""
    for ry in range(lm.shape[0]):
        for rx in range(lm.shape[1]):
            pred = _level_pred(lm, ry, rx)
            if pred < 0:
                v = dec_eg(ds, buf, 2)
            else:
                ctx = CTX_LEVELMAP + (1 if (ry > 0 and rx > 0 and lm[ry - 1, rx] == pred) else 0)
                if dec_bit(ds, buf, probs, ctx) == 0:
                    v = pred
                else:
                    neg = dec_bit(ds, buf, probs, CTX_LEVELMAP + 2)
                    a = 0
                    while a < 5 and dec_bit(ds, buf, probs, CTX_LEVELMAP + 3 + min(a, 4)) == 1:
                        a += 1
                    if a == 5:
                        extra = dec_eg(ds, buf, 1)
                        if extra < 0:
                            return ERR_ESCAPE
                        a += extra
                    v = pred - (a + 1) if neg else pred + a + 1
            if v < 0 or v >= n_levels:
                return ERR_LEVEL_RANGE
            lm[ry, rx] = v
    return ERR_OK
