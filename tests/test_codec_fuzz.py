"""Corrupt and truncated streams: the decoder returns a frame or raises BitstreamError, never
anything else (no crash, hang or unbounded allocation)."""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stac.codec import BitstreamError, Decoder, Encoder, TableSet, default_tables
from stac.codec.bitstream import HEADER_SIZE, VERSION
from stac.frames import open_video

W, H = 64, 48


@pytest.fixture(scope="module")
def streams(dataset):
    video = dataset("videos") / "solidWhiteRight.mp4"
    frames = [f.rgb for f in open_video(video, size=(W, H), max_frames=3)]
    enc = Encoder(W, H, region_size=2)
    grid = enc.grid
    levels = np.random.default_rng(0).integers(20, 40, size=grid)
    plain = [enc.encode(f, levels).data for f in frames]
    custom = TableSet(default_tables().steps[10:40] * 1.3)
    enc2 = Encoder(W, H, tables=custom)
    with_tables = [enc2.encode(f, 5).data for f in frames[:2]]
    return [plain, with_tables]


def _decode_or_error(prefix, data):
    dec = Decoder()
    for p in prefix:
        dec.decode(p)
    try:
        out = dec.decode(data)
    except BitstreamError:
        return None
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(5)
    buf = bytearray(data)
    if kind == 0:  # flip a few bytes anywhere
        for _ in range(rng.integers(1, 6)):
            buf[rng.integers(len(buf))] ^= int(rng.integers(1, 256))
    elif kind == 1:  # truncate
        buf = buf[: rng.integers(0, len(buf))]
    elif kind == 2:  # flip bits in the payload only
        for _ in range(rng.integers(1, 4)):
            i = rng.integers(HEADER_SIZE, len(buf))
            buf[i] ^= 1 << int(rng.integers(8))
    elif kind == 3:  # drop or insert a byte
        i = int(rng.integers(len(buf)))
        buf = buf[:i] + buf[i + 1 :] if rng.random() < 0.5 else buf[:i] + b"\x5a" + buf[i:]
    else:  # replace the payload tail with noise
        i = int(rng.integers(HEADER_SIZE, len(buf)))
        buf = buf[:i] + rng.integers(0, 256, size=len(buf) - i, dtype=np.uint8).tobytes()
    return bytes(buf)


def test_random_corruptions_over_many_seeds(streams):
    outcomes = {"frame": 0, "error": 0}
    for seed in range(400):
        rng = np.random.default_rng(seed)
        stream = streams[seed % len(streams)]
        k = int(rng.integers(len(stream)))
        out = _decode_or_error(stream[:k], _mutate(stream[k], rng))
        outcomes["frame" if out is not None else "error"] += 1
    # both outcomes occur: corruption is detected often, but the decoder is no checksum
    assert outcomes["frame"] > 20 and outcomes["error"] > 100, outcomes


def test_every_truncation_of_a_p_frame(streams):
    stream = streams[0]
    for n in range(len(stream[1])):
        _decode_or_error(stream[:1], stream[1][:n])
    for n in range(0, len(stream[0]), 7):
        _decode_or_error([], stream[0][:n])


def test_headers_claiming_huge_frames_fail_fast():
    header = struct.pack(
        "<BBHHBBIHH", VERSION, 1, 4096, 4096, 6, 52, default_tables().table_id, 0, 0
    )
    with pytest.raises(BitstreamError):
        Decoder().decode(header + b"\x00\x12\x34")
    bad = [
        struct.pack("<BBHHBBIHH", VERSION, 1, 0, 16, 6, 52, 0, 0, 0),  # zero width
        struct.pack("<BBHHBBIHH", VERSION, 1, 5000, 16, 6, 52, 0, 0, 0),  # too wide
        struct.pack("<BBHHBBIHH", VERSION, 1, 16, 16, 0, 52, 0, 0, 0),  # zero region size
        struct.pack("<BBHHBBIHH", VERSION, 0x81, 16, 16, 6, 52, 0, 0, 0),  # reserved flag
        struct.pack("<BBHHBBIHH", 0x42, 1, 16, 16, 6, 52, 0, 0, 0),  # unknown version
        struct.pack("<BBHHBBIHH", VERSION, 3, 16, 16, 6, 52, 0, 0, 0),  # tables cut off
        b"\xa1\x01",
        b"",
    ]
    for data in bad:
        with pytest.raises(BitstreamError):
            Decoder().decode(data + b"\x00" * 8)


@settings(max_examples=150, deadline=None)
@given(
    payload=st.binary(min_size=0, max_size=400),
    intra=st.booleans(),
    size=st.tuples(st.integers(1, 80), st.integers(1, 80)),
)
def test_arbitrary_payloads(payload, intra, size):
    w, h = size
    header = struct.pack(
        "<BBHHBBIHH", VERSION, 1 if intra else 0, w, h, 3, 52, default_tables().table_id, 1, 0
    )
    dec = Decoder()
    if not intra:
        dec.decode(Encoder(w, h).encode(np.full((h, w, 3), 99, np.uint8), 30).data)
    try:
        out = dec.decode(header + payload)
    except BitstreamError:
        return
    assert out.shape == (h, w, 3)
