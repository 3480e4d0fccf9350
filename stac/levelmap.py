"""Compact side information of `stac-plus`: the fed-back region-level map, entropy-coded.

The edge's levels for keyframe k are coded as differences to a reference map both ends
hold: the level map coded in keyframe k's own bitstream (the device encoded it, the
edge's decoder read it back), or, without one, the map's median level. Differences are
range-coded in raster order with the codec's adaptive binary coder
(`stac.codec.rangecoder`): a zero flag (context: how many of the left and upper
differences are non-zero), a sign, and the magnitude in unary with adaptive contexts
(escape to Exp-Golomb); a map equal to its reference (or constant) has no payload at
all. The message also carries the uniform level at the edge's budget
(the device's fallback where its propagated levels are unreliable).

Layout: b"LM" | version u8 | flags u8 (bit 0: differences to the reference map; bit 1: all
differences zero, no payload) |
rows u16 | cols u16 | base level u8 (the median; 0 with a reference) | uniform level u8 |
range-coded differences.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numba import njit

from stac.codec.rangecoder import (
    D_OVERREAD,
    E_OVERFLOW,
    E_POS,
    dec_bit,
    dec_eg,
    dec_init,
    enc_bit,
    enc_eg,
    enc_flush,
    new_contexts,
    new_decoder_state,
    new_encoder_state,
)

MAGIC = b"LM"
VERSION = 1
_HEADER = struct.Struct("<2sBBHHBB")
FLAG_REFERENCE = 1
FLAG_CONSTANT = 2  # every difference is zero: no coded payload
UNARY = 6  # magnitudes 1..UNARY in unary with their own contexts, larger ones escape
_CTX_ZERO, _CTX_SIGN, _CTX_MAG = 0, 3, 4
_CONTEXTS = _CTX_MAG + UNARY


class LevelMapError(ValueError):
    """Bytes that are not a level-map message, or one that does not fit its reference."""


@dataclass(frozen=True)
class LevelMessage:
    """A decoded level-map message: the region levels and the uniform level at the budget."""

    levels: np.ndarray
    uniform_level: int


@njit(cache=True)
def _nonzero_neighbours(diffs, y, x):
    """How many of the left and upper differences are non-zero (the zero flag's context)."""
    return int(x > 0 and diffs[y, x - 1] != 0) + int(y > 0 and diffs[y - 1, x] != 0)


@njit(cache=True)
def _encode(es, probs, diffs, out):
    rows, cols = diffs.shape
    for y in range(rows):
        for x in range(cols):
            near = _nonzero_neighbours(diffs, y, x)
            d = diffs[y, x]
            enc_bit(es, out, probs, _CTX_ZERO + near, 1 if d != 0 else 0)
            if d == 0:
                continue
            enc_bit(es, out, probs, _CTX_SIGN, 1 if d < 0 else 0)
            m = abs(d)
            k = 1
            while k <= UNARY:
                more = 1 if m > k else 0
                enc_bit(es, out, probs, _CTX_MAG + k - 1, more)
                if more == 0:
                    break
                k += 1
            if m > UNARY:
                enc_eg(es, out, m - UNARY - 1, 0)
    enc_flush(es, out)


@njit(cache=True)
def _decode(ds, probs, buf, rows, cols, out):
    dec_init(ds, buf)
    for y in range(rows):
        for x in range(cols):
            near = _nonzero_neighbours(out, y, x)
            if dec_bit(ds, buf, probs, _CTX_ZERO + near) == 0:
                out[y, x] = 0
                continue
            negative = dec_bit(ds, buf, probs, _CTX_SIGN)
            m = 1
            while m <= UNARY and dec_bit(ds, buf, probs, _CTX_MAG + m - 1) == 1:
                m += 1
            if m > UNARY:
                extra = dec_eg(ds, buf, 0)
                if extra < 0 or extra > 255:
                    return -1
                m += extra
            out[y, x] = -m if negative else m
    return ds[D_OVERREAD]


def _check_levels(levels: np.ndarray, name: str) -> np.ndarray:
    levels = np.asarray(levels)
    if levels.ndim != 2 or levels.size == 0 or not np.issubdtype(levels.dtype, np.integer):
        raise LevelMapError(f"{name} must be a non-empty 2-D integer map, got "
                            f"{levels.shape} {levels.dtype}")
    if levels.min() < 0 or levels.max() > 255 or max(levels.shape) > 65535:
        raise LevelMapError(f"{name} levels must lie in [0, 255] on a grid below 65536")
    return levels.astype(np.int64)


def encode_level_map(levels: np.ndarray, uniform_level: int,
                     reference: np.ndarray | None = None) -> bytes:
    """The message for region `levels` (rows, cols): differences to `reference` (the map both
    ends hold) or, when None, to the map's median level; `uniform_level` rides along."""
    levels = _check_levels(levels, "levels")
    if not 0 <= int(uniform_level) <= 255:
        raise LevelMapError(f"uniform level must lie in [0, 255], got {uniform_level}")
    if reference is None:
        base = int(np.median(levels))
        diffs, flags = levels - base, 0
    else:
        reference = _check_levels(reference, "reference")
        if reference.shape != levels.shape:
            raise LevelMapError(f"reference {reference.shape} and levels {levels.shape} differ")
        base, diffs, flags = 0, levels - reference, FLAG_REFERENCE
    header = _HEADER.pack(MAGIC, VERSION, flags | (FLAG_CONSTANT if not diffs.any() else 0),
                          levels.shape[0], levels.shape[1], base, int(uniform_level))
    if not diffs.any():
        return header
    out = np.zeros(16 + 16 * levels.size, np.uint8)  # 128 bits a region: above any case
    es = new_encoder_state()
    _encode(es, new_contexts(_CONTEXTS), np.ascontiguousarray(diffs), out)
    if es[E_OVERFLOW]:
        raise LevelMapError(f"level map {levels.shape} overflowed its {out.size}-byte buffer")
    return header + out[:int(es[E_POS])].tobytes()


def decode_level_map(data: bytes, reference: np.ndarray | None = None) -> LevelMessage:
    """The levels and uniform level of a message; a message coded against a reference map
    needs the same `reference` (LevelMapError when it is missing or of another shape)."""
    if len(data) < _HEADER.size:
        raise LevelMapError(f"{len(data)} bytes are too short for a level-map message")
    magic, version, flags, rows, cols, base, uniform = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or rows == 0 or cols == 0:
        raise LevelMapError(f"not a version-{VERSION} level-map message "
                            f"(magic {magic!r}, version {version}, grid {rows}x{cols})")
    diffs = np.zeros((rows, cols), np.int64)
    status = 0 if flags & FLAG_CONSTANT else _decode(new_decoder_state(), new_contexts(_CONTEXTS),
                     np.frombuffer(data, np.uint8, offset=_HEADER.size), rows, cols, diffs)
    if status != 0:
        raise LevelMapError(f"level-map message of {len(data)} bytes is truncated or corrupt")
    if flags & FLAG_REFERENCE:
        if reference is None:
            raise LevelMapError("this level map is coded against a reference map; none given")
        reference = _check_levels(reference, "reference")
        if reference.shape != (rows, cols):
            raise LevelMapError(f"reference {reference.shape} does not match the message's "
                                f"grid {(rows, cols)}")
        levels = reference + diffs
    else:
        levels = base + diffs
    if levels.min() < 0 or levels.max() > 255:
        raise LevelMapError("decoded levels fall outside [0, 255]: wrong reference or corrupt")
    return LevelMessage(levels=levels.astype(np.int16), uniform_level=int(uniform))
