"""Adaptive binary range coder (CABAC-like) in numba: the entropy-coding engine of the codec.

An LZMA-style carry-less range coder (32-bit range, byte-wise renormalisation) drives
binary decisions whose probabilities adapt per context. Each context mixes two estimators
(fast: 1/16, slow: 1/128 adaptation) of P(bit = 0) in 16-bit precision; the coder uses
their mean at 15 bits. Bypass bits (signs, Exp-Golomb suffixes) use P = 1/2. The
decoder never reads past its buffer: missing bytes count as an over-read, which the caller
turns into `BitstreamError`. Costs for rate-distortion decisions come from `COST_TABLE`
(-log2 P in bits, indexed by the 15-bit probability >> 3) without touching the state.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TOP = 1 << 24
PROB_BITS = 15
# encoder state slots (E_DRY: contexts adapt, nothing is coded; see `new_encoder_state`)
E_LOW, E_RANGE, E_CACHE, E_CSIZE, E_POS, E_OVERFLOW, E_DRY = 0, 1, 2, 3, 4, 5, 6
# decoder state slots
D_CODE, D_RANGE, D_POS, D_OVERREAD = 0, 1, 2, 3

COST_TABLE = -np.log2((np.arange(4096) * 8 + 4) / 32768.0)


def new_contexts(n: int) -> np.ndarray:
    """n adaptive contexts, each two 16-bit estimators of P(0) starting at 1/2."""
    return np.full((n, 2), 32768, dtype=np.int32)


def new_encoder_state(dry: bool = False) -> np.ndarray:
    """A fresh encoder. `dry`: every `enc_bit` adapts its context as when writing, but the
    arithmetic coding is skipped (no bytes, `enc_bits_used` stays 0): what a caller that
    needs only the encoder's decisions, not its bitstream, runs."""
    s = np.zeros(7, dtype=np.int64)
    s[E_RANGE] = 0xFFFFFFFF
    s[E_CSIZE] = 1
    s[E_DRY] = 1 if dry else 0
    return s


def new_decoder_state() -> np.ndarray:
    return np.zeros(4, dtype=np.int64)


@njit(cache=True)
def _prob(probs, ctx):
    return (probs[ctx, 0] + probs[ctx, 1]) >> 2


@njit(cache=True)
def _update(probs, ctx, bit):
    if bit == 0:
        probs[ctx, 0] += (65536 - probs[ctx, 0]) >> 4
        probs[ctx, 1] += (65536 - probs[ctx, 1]) >> 7
    else:
        probs[ctx, 0] -= probs[ctx, 0] >> 4
        probs[ctx, 1] -= probs[ctx, 1] >> 7


@njit(cache=True)
def _shift_low(es, out):
    low = es[E_LOW]
    if low < 0xFF000000 or low >= (1 << 32):
        carry = low >> 32
        temp = es[E_CACHE]
        while True:
            if es[E_POS] < out.shape[0]:
                out[es[E_POS]] = (temp + carry) & 0xFF
            else:
                es[E_OVERFLOW] = 1
            es[E_POS] += 1
            temp = 0xFF
            es[E_CSIZE] -= 1
            if es[E_CSIZE] == 0:
                break
        es[E_CACHE] = (low >> 24) & 0xFF
    es[E_CSIZE] += 1
    es[E_LOW] = (low & 0x00FFFFFF) << 8


@njit(cache=True)
def _encode_with_prob(es, out, p, bit):
    if es[E_DRY]:
        return
    bound = (es[E_RANGE] >> PROB_BITS) * p
    if bit == 0:
        es[E_RANGE] = bound
    else:
        es[E_LOW] += bound
        es[E_RANGE] -= bound
    while es[E_RANGE] < TOP:
        es[E_RANGE] <<= 8
        _shift_low(es, out)


@njit(cache=True)
def enc_bit(es, out, probs, ctx, bit):
    """Encode one binary decision `bit` with adaptive context `ctx`."""
    _encode_with_prob(es, out, _prob(probs, ctx), bit)
    _update(probs, ctx, bit)


@njit(cache=True)
def enc_bypass(es, out, bit):
    """Encode one equiprobable bit."""
    _encode_with_prob(es, out, 1 << (PROB_BITS - 1), bit)


@njit(cache=True)
def enc_flush(es, out):
    if es[E_DRY]:
        return
    for _ in range(5):
        _shift_low(es, out)


@njit(cache=True)
def enc_bits_used(es):
    """Information written so far in bits (differences between calls are exact costs)."""
    if es[E_DRY]:
        return 0.0
    return (es[E_POS] + es[E_CSIZE]) * 8.0 - np.log2(float(es[E_RANGE]))


@njit(cache=True)
def _next_byte(ds, buf):
    if ds[D_POS] < buf.shape[0]:
        b = buf[ds[D_POS]]
    else:
        b = 0
        ds[D_OVERREAD] += 1
    ds[D_POS] += 1
    return b


@njit(cache=True)
def dec_init(ds, buf):
    ds[D_CODE] = 0
    ds[D_RANGE] = 0xFFFFFFFF
    ds[D_POS] = 0
    ds[D_OVERREAD] = 0
    for _ in range(5):
        ds[D_CODE] = ((ds[D_CODE] << 8) | _next_byte(ds, buf)) & 0xFFFFFFFF


@njit(cache=True)
def _decode_with_prob(ds, buf, p):
    bound = (ds[D_RANGE] >> PROB_BITS) * p
    if ds[D_CODE] < bound:
        ds[D_RANGE] = bound
        bit = 0
    else:
        ds[D_CODE] -= bound
        ds[D_RANGE] -= bound
        bit = 1
    while ds[D_RANGE] < TOP:
        ds[D_RANGE] <<= 8
        ds[D_CODE] = ((ds[D_CODE] << 8) | _next_byte(ds, buf)) & 0xFFFFFFFF
    return bit


@njit(cache=True)
def dec_bit(ds, buf, probs, ctx):
    """Decode one binary decision with adaptive context `ctx`."""
    bit = _decode_with_prob(ds, buf, _prob(probs, ctx))
    _update(probs, ctx, bit)
    return bit


@njit(cache=True)
def dec_bypass(ds, buf):
    return _decode_with_prob(ds, buf, 1 << (PROB_BITS - 1))


@njit(cache=True)
def cost_bit(probs, ctx, bit, cost_table):
    """Estimated bits of coding `bit` in context `ctx` (state unchanged)."""
    p = _prob(probs, ctx)
    if bit != 0:
        p = 32768 - p
    return cost_table[p >> 3]


# ---- binarisations shared by all syntax elements -------------------------------------------

MAX_EG_PREFIX = 24  # Exp-Golomb prefixes longer than this are corrupt


@njit(cache=True)
def enc_eg(es, out, value, k):
    """Exp-Golomb code of order k (bypass bits) for value >= 0."""
    while value >= (1 << k):
        enc_bypass(es, out, 1)
        value -= 1 << k
        k += 1
    enc_bypass(es, out, 0)
    while k > 0:
        k -= 1
        enc_bypass(es, out, (value >> k) & 1)


@njit(cache=True)
def dec_eg(ds, buf, k):
    """Decode an Exp-Golomb value of order k; returns -1 if the prefix is too long."""
    value = 0
    n = 0
    while dec_bypass(ds, buf) == 1:
        value += 1 << k
        k += 1
        n += 1
        if n > MAX_EG_PREFIX:
            return -1
    while k > 0:
        k -= 1
        value += dec_bypass(ds, buf) << k
    return value


@njit(cache=True)
def cost_eg(value, k):
    n = 1 + k
    while value >= (1 << k):
        value -= 1 << k
        k += 1
        n += 2
    return float(n)
