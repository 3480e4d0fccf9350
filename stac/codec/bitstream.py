"""Frame header of the codec bitstream (format version 1) and its validation.

A frame is: a 16-byte header, optionally the embedded table set, then one range-coded
payload holding the region-level map followed by the macroblocks.

    offset size field
    0      1    version (0xA1 = format 1; doubles as a magic byte)
    1      1    flags: bit 0 intra frame, bit 1 table set embedded; other bits 0
    2      2    width in pixels   (uint16 LE, 1..MAX_DIM)
    4      2    height in pixels  (uint16 LE, 1..MAX_DIM)
    6      1    region size R in 4x4 blocks (1..MAX_REGION)
    7      1    number of table levels L (1..255)
    8      4    table-set id (CRC-32 of its steps, `TableSet.table_id`)
    12     2    frame number (mod 2**16)
    14     2    reference frame number (mod 2**16; equals the frame number for intra frames)
    16     L*96 if embedded: the steps as uint16 LE counts of 1/16, shaped (L, 3, 16)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from stac.codec.errors import BitstreamError
from stac.codec.quant import TableSet

VERSION = 0xA1
MAX_DIM = 4096
MAX_REGION = 64
FLAG_INTRA = 1
FLAG_TABLES = 2
_HEADER = struct.Struct("<BBHHBBIHH")
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True)
class FrameHeader:
    intra: bool
    width: int
    height: int
    region_size: int
    n_levels: int
    table_id: int
    frame_number: int
    ref_number: int
    tables: TableSet | None = None  # present when embedded

    def pack(self) -> bytes:
        flags = (FLAG_INTRA if self.intra else 0) | (FLAG_TABLES if self.tables else 0)
        head = _HEADER.pack(
            VERSION,
            flags,
            self.width,
            self.height,
            self.region_size,
            self.n_levels,
            self.table_id,
            self.frame_number & 0xFFFF,
            self.ref_number & 0xFFFF,
        )
        if self.tables is None:
            return head
        return head + self.tables.to_units().astype("<u2").tobytes()


def parse_header(data: bytes) -> tuple[FrameHeader, int]:
    """Parse and validate a frame header; returns it and the payload offset."""
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"frame of {len(data)} bytes is shorter than its header")
    version, flags, width, height, region, n_levels, table_id, fno, rno = _HEADER.unpack_from(data)
    if version != VERSION:
        raise BitstreamError(f"unknown bitstream version byte 0x{version:02x}")
    if flags & ~(FLAG_INTRA | FLAG_TABLES):
        raise BitstreamError(f"reserved header flags set: 0x{flags:02x}")
    if not (1 <= width <= MAX_DIM and 1 <= height <= MAX_DIM):
        raise BitstreamError(f"frame size {width}x{height} outside 1..{MAX_DIM}")
    if not 1 <= region <= MAX_REGION:
        raise BitstreamError(f"region size {region} outside 1..{MAX_REGION}")
    if n_levels < 1:
        raise BitstreamError("table set with zero levels")
    offset = HEADER_SIZE
    tables = None
    if flags & FLAG_TABLES:
        n = n_levels * 48 * 2
        if len(data) < offset + n:
            raise BitstreamError("frame truncated inside its embedded table set")
        units = np.frombuffer(data, dtype="<u2", count=n_levels * 48, offset=offset)
        if np.any(units == 0):
            raise BitstreamError("embedded table set holds a zero step")
        tables = TableSet.from_units(units.reshape(n_levels, 3, 16))
        if tables.table_id != table_id:
            raise BitstreamError("embedded table set does not match its id")
        offset += n
    header = FrameHeader(
        bool(flags & FLAG_INTRA), width, height, region, n_levels, table_id, fno, rno, tables
    )
    return header, offset
