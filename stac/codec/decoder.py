"""The codec's decoder: bytes -> RGB frame, keeping its own reference (closed loop).

It trusts nothing in the stream: sizes are checked against limits before anything is
allocated, every loop is bounded by the frame size, and any inconsistency (truncation,
unknown version or table set, missing reference, out-of-range level, MV or escape code)
raises `BitstreamError`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from stac.codec import mb_decoder
from stac.codec.bitstream import parse_header
from stac.codec.color import ycbcr420_to_rgb
from stac.codec.deblock import level_qps
from stac.codec.errors import BitstreamError, check_size
from stac.codec.jit import announce_compile
from stac.codec.layout import FrameLayout
from stac.codec.mb_common import FrameContext
from stac.codec.quant import TableSet, default_tables
from stac.codec.rangecoder import D_OVERREAD, dec_init, new_contexts, new_decoder_state
from stac.codec.syntax import (
    ERR_ESCAPE,
    ERR_INTRA_MODE,
    ERR_LEVEL_RANGE,
    ERR_MV_RANGE,
    ERR_TRUNCATED,
    N_CONTEXTS,
    dec_level_map,
)

_ERRORS = {
    ERR_TRUNCATED: "stream truncated (the range decoder ran past the end)",
    ERR_LEVEL_RANGE: "region level outside the table set",
    ERR_ESCAPE: "escape code too long",
    ERR_MV_RANGE: "motion vector out of range",
    ERR_INTRA_MODE: "intra prediction mode needs unavailable neighbours",
}


class Decoder:
    """Stateful decoder of one stream. `tables`: table sets it knows besides the default
    and those embedded in frames it has decoded; `frame_size` (w, h): the only size it
    accepts (checked from the header, before anything is allocated)."""

    def __init__(self, tables: TableSet | Iterable[TableSet] | None = None,
                 frame_size: tuple[int, int] | None = None) -> None:
        self.frame_size = frame_size
        known = [default_tables()]
        if isinstance(tables, TableSet):
            known.append(tables)
        elif tables is not None:
            known.extend(tables)
        self._tables = {t.table_id: t for t in known}
        self._ref: tuple[int, int, int, np.ndarray, np.ndarray] | None = None
        self.last_level_map: np.ndarray | None = None
        self.last_intra: bool = False
        announce_compile()  # a notice before the first (minutes-long) numba compile

    def reset(self) -> None:
        self._ref = None

    def decode(self, data: bytes) -> np.ndarray:
        """Decode one frame's bytes to RGB uint8 (H, W, 3)."""
        return ycbcr420_to_rgb(*self.decode_planes(data))

    def decode_planes(self, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode one frame's bytes to its (Y, Cb, Cr) uint8 planes."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        header, offset = parse_header(data)
        check_size("frame", (header.width, header.height), self.frame_size)
        if header.tables is not None:
            self._tables[header.table_id] = header.tables
        tables = self._tables.get(header.table_id)
        if tables is None:
            raise BitstreamError(f"unknown table set id 0x{header.table_id:08x}")
        if tables.levels != header.n_levels:
            raise BitstreamError("table set size does not match the header")
        lay = FrameLayout(header.width, header.height, header.region_size)
        ph, pw = lay.padded
        if header.intra:
            ref_y = np.zeros((ph, pw), dtype=np.uint8)
            ref_c = np.zeros((2, ph // 2, pw // 2), dtype=np.uint8)
        else:
            if self._ref is None:
                raise BitstreamError("inter frame but the decoder holds no reference frame")
            number, width, height, ref_y, ref_c = self._ref
            if (width, height) != (header.width, header.height):
                raise BitstreamError(
                    f"inter frame of {header.width}x{header.height} against a "
                    f"{width}x{height} reference"
                )
            if number != header.ref_number:
                raise BitstreamError(
                    f"inter frame predicts from frame {header.ref_number}, decoder holds "
                    f"frame {number}"
                )
        payload = np.frombuffer(data, dtype=np.uint8, offset=offset)
        ds = new_decoder_state()
        probs = new_contexts(N_CONTEXTS)
        dec_init(ds, payload)
        level_map = np.zeros(lay.grid, dtype=np.int64)
        err = dec_level_map(ds, payload, probs, level_map, tables.levels)
        if err == 0 and ds[D_OVERREAD] > 0:
            err = ERR_TRUNCATED
        if err != 0:
            raise BitstreamError(f"level map: {_ERRORS.get(err, f'error {err}')}")
        lvl_y, lvl_c = lay.level_arrays(level_map)
        rec_y = np.zeros((ph, pw), dtype=np.uint8)
        rec_c = np.zeros((2, ph // 2, pw // 2), dtype=np.uint8)
        mbtype = np.zeros((ph // 16, pw // 16), dtype=np.int64)
        ctx = FrameContext(ref_y, ref_c, rec_y, rec_c, tables.steps, lvl_y, lvl_c, mbtype,
                           level_qps(tables.steps))
        err = mb_decoder.decode_mbs(ds, payload, probs, header.intra, ctx)
        if err != 0:
            raise BitstreamError(f"macroblock data: {_ERRORS.get(err, f'error {err}')}")
        self._ref = (header.frame_number, header.width, header.height, rec_y, rec_c)
        self.last_level_map = level_map
        self.last_intra = header.intra
        return lay.crop_planes(rec_y, rec_c)
