"""The wire protocol: round trips, validation, and parsing of hostile bytes."""

from __future__ import annotations

import asyncio
import math
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stac import protocol as P
from stac.emu import streams
from stac.protocol import ErrorCode, ProtocolError

names = st.from_regex(P.NAME_PATTERN, fullmatch=True)
u32 = st.integers(0, 2**32 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | finite | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=10)

messages = st.one_of(
    st.builds(P.Hello, device_id=names, scheme=names,
              config=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
              token=st.text(max_size=30)),
    st.builds(P.Keyframe, index=u32, t_capture=st.floats(0, 1e9), payload=st.binary(max_size=300)),
    st.builds(P.Feedback, index=u32, segmentation=st.binary(max_size=300),
              levels=st.binary(max_size=100)),
    st.builds(lambda knobs, fps, t: P.Config.of({**knobs, "fps": fps}, t),
              st.dictionaries(st.sampled_from(["B", "qp", "level", "quality", "resolution"]),
                              finite, max_size=3),
              st.floats(1e-3, P.MAX_FPS), st.floats(0, 1e9)),
    st.builds(P.Content, second=u32, c=finite, d=st.floats(0, 1e12)),
    st.builds(P.Bye, reason=st.text(max_size=40)),
    st.builds(P.Error, code=st.integers(0, 0xFFFF), text=st.text(max_size=40)),
    st.builds(P.Report, second=u32, bitrate_kbps=st.floats(0, 1e9),
              bandwidth_kbps=st.floats(0, 1e9)),
    st.builds(P.Part, serial=u32, data=st.binary(max_size=100), last=st.booleans()),
    st.builds(P.Part, serial=u32, data=st.just(b""), abort=st.just(True)),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_round_trip(msg):
    frame = P.encode(msg)
    assert P.decode(frame) == msg
    kind, length = P.parse_header(frame[:P.HEADER.size])
    assert length == len(frame) - P.HEADER.size
    assert P.decode_body(kind, frame[P.HEADER.size:]) == msg


def test_header_layout():
    frame = P.encode(P.Keyframe(index=7, t_capture=0.25, payload=b"abc"))
    magic, version, tag, length = struct.unpack("!2sBBI", frame[:8])
    assert (magic, version, tag) == (b"ST", P.PROTOCOL_VERSION, P.MessageType.KEYFRAME)
    assert length == len(frame) - 8 == 4 + 8 + 4 + 3
    assert frame.endswith(b"abc")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_protocol_error_only(data):
    try:
        P.decode(data)
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)


@settings(max_examples=200, deadline=None)
@given(messages, st.data())
def test_truncation_is_detected(msg, data):
    frame = P.encode(msg)
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ProtocolError) as info:
        P.decode(frame[:cut])
    assert info.value.code == ErrorCode.TRUNCATED


@settings(max_examples=200, deadline=None)
@given(messages, st.binary(min_size=1, max_size=10))
def test_trailing_bytes_are_refused(msg, extra):
    with pytest.raises(ProtocolError) as info:
        P.decode(P.encode(msg) + extra)
    assert info.value.code == ErrorCode.MALFORMED


@settings(max_examples=200, deadline=None)
@given(messages, st.integers(0, 255).filter(lambda v: v != P.PROTOCOL_VERSION))
def test_wrong_version(msg, version):
    frame = bytearray(P.encode(msg))
    frame[2] = version
    with pytest.raises(ProtocolError) as info:
        P.decode(bytes(frame))
    assert info.value.code == ErrorCode.BAD_VERSION


@given(st.integers(P.MAX_BODY + 1, 2**32 - 1))
def test_oversized_length_prefix(length):
    header = struct.pack("!2sBBI", b"ST", P.PROTOCOL_VERSION, P.MessageType.KEYFRAME, length)
    with pytest.raises(ProtocolError) as info:
        P.parse_header(header)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_unknown_type_and_bad_magic():
    with pytest.raises(ProtocolError) as info:
        P.decode(struct.pack("!2sBBI", b"ST", P.PROTOCOL_VERSION, 99, 0))
    assert info.value.code == ErrorCode.UNKNOWN_TYPE
    with pytest.raises(ProtocolError) as info:
        P.decode(b"GET / HTTP/1.1\r\n\r\n")
    assert info.value.code == ErrorCode.MALFORMED


def test_inner_length_overrun_is_malformed():
    frame = bytearray(P.encode(P.Feedback(index=1, segmentation=b"xy", levels=b"z")))
    struct.pack_into("!I", frame, 8 + 4, 1000)  # segmentation claims 1000 bytes
    with pytest.raises(ProtocolError) as info:
        P.decode(bytes(frame))
    assert info.value.code == ErrorCode.MALFORMED


def _with_body(tag: P.MessageType, body: bytes) -> bytes:
    return struct.pack("!2sBBI", b"ST", P.PROTOCOL_VERSION, tag, len(body)) + body


def _knob(name: bytes, value: float) -> bytes:
    return struct.pack("!H", len(name)) + name + struct.pack("!d", value)


@pytest.mark.parametrize("body", [
    struct.pack("!dB", 0.0, 1) + _knob(b"fps", 0.0),
    struct.pack("!dB", 0.0, 1) + _knob(b"fps", 5000.0),
    struct.pack("!dB", 0.0, 1) + _knob(b"B", float("nan")),
    struct.pack("!dB", 0.0, 2) + _knob(b"qp", float("inf")) + _knob(b"fps", 5.0),
    struct.pack("!dB", float("inf"), 1) + _knob(b"fps", 5.0),
    struct.pack("!dB", 0.0, 0),
    struct.pack("!dB", 0.0, 2) + _knob(b"fps", 5.0) + _knob(b"fps", 6.0),
    struct.pack("!dB", 0.0, 2) + _knob(b"fps", 5.0),
    struct.pack("!dB", 0.0, 1) + _knob(b"fps", 5.0) + b"x",
])
def test_config_ranges(body):
    with pytest.raises(ProtocolError) as info:
        P.decode(_with_body(P.MessageType.CONFIG, body))
    assert info.value.code == ErrorCode.MALFORMED


def test_config_carries_any_scheme_knobs():
    config = P.Config.of({"qp": 26.0, "fps": 5.0}, t_effective=3.0)
    decoded = P.decode(P.encode(config))
    assert decoded == config and decoded["qp"] == 26.0 and decoded.fps == 5.0
    assert decoded.replace(4.0, qp=30.0) == P.Config.of({"qp": 30.0, "fps": 5.0}, 4.0)
    with pytest.raises(KeyError, match="no knob 'B'"):
        decoded["B"]


def test_hello_field_validation():
    good = P.encode(P.Hello("dev", "h264", {"B": 1}, "t"))
    body = bytearray(good[8:])
    body[3] = 0xFF  # first byte of device id "dev" -> invalid UTF-8
    with pytest.raises(ProtocolError, match="UTF-8"):
        P.decode(_with_body(P.MessageType.HELLO, bytes(body)))
    for raw, match in ((b"[]", "JSON object"), (b"NaN", "JSON object"), (b"{", "JSON object")):
        hello = (struct.pack("!BH", 1, 1) + b"d" + struct.pack("!H", 1) + b"s"
                 + struct.pack("!I", len(raw)) + raw + struct.pack("!H", 0))
        with pytest.raises(ProtocolError, match=match):
            P.decode(_with_body(P.MessageType.HELLO, hello))


@pytest.mark.parametrize("msg", [
    P.Keyframe(index=-1, t_capture=0.0, payload=b""),
    P.Keyframe(index=2**32, t_capture=0.0, payload=b""),
    P.Keyframe(index=1, t_capture=float("nan"), payload=b""),
    P.Keyframe(index=1, t_capture=0.0, payload="text"),
    P.Config.of({"B": 1.0, "fps": 0.0}),
    P.Config.of({"qp": 30.0}),
    P.Config(knobs=()),
    P.Content(second=0, c=1.0, d=-1.0),
    P.Hello(device_id="", scheme="x"),
    P.Hello(device_id="x" * 65, scheme="x"),
    P.Hello(device_id="d", scheme="x", config={"a": float("inf")}),
    P.Hello(device_id="d", scheme="x", config={1: 2}),
    P.Error(code=70000, text=""),
    "not a message",
])
def test_encode_validates(msg):
    with pytest.raises(ProtocolError):
        P.encode(msg)


def test_encode_refuses_oversized_body():
    with pytest.raises(ProtocolError) as info:
        P.encode(P.Keyframe(index=0, t_capture=0.0, payload=bytes(100)), max_body=50)
    assert info.value.code == ErrorCode.TOO_LARGE


def _read_all(data: bytes, eof: bool = True, timeout: float | None = 0.5):
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        out = []
        while True:
            msg = await streams.read_message(reader, timeout=timeout, idle_timeout=timeout)
            if msg is None:
                return out
            out.append(msg)
    return asyncio.run(run())


@settings(max_examples=50, deadline=None)
@given(st.lists(messages, max_size=5))
def test_stream_reader_reads_a_sequence(msgs):
    assert _read_all(b"".join(P.encode(m) for m in msgs)) == msgs


def test_stream_reader_truncated_and_timeout():
    frame = P.encode(P.Keyframe(index=3, t_capture=1.0, payload=b"x" * 50))
    for cut in (1, 5, 8, 20, len(frame) - 1):
        with pytest.raises(ProtocolError) as info:
            _read_all(frame[:cut])
        assert info.value.code == ErrorCode.TRUNCATED
    with pytest.raises(ProtocolError) as info:  # never completes: the stream stays open
        _read_all(frame[:20], eof=False, timeout=0.1)
    assert info.value.code == ErrorCode.TIMEOUT
    with pytest.raises(ProtocolError) as info:  # nothing at all within the idle timeout
        _read_all(b"", eof=False, timeout=0.1)
    assert info.value.code == ErrorCode.TIMEOUT


@settings(max_examples=100, deadline=None)
@given(st.lists(messages.filter(lambda m: not isinstance(m, P.Part)), min_size=1, max_size=4),
       st.integers(1, 64), st.data())
def test_split_and_reassemble(msgs, part_bytes, data):
    """Parts carry whole frames; an aborted message is dropped and the next one still parses."""
    asm = P.Reassembler()
    out = []
    for serial, msg in enumerate(msgs):
        parts = P.split(msg, serial, part_bytes)
        assert b"".join(p.data for p in parts) == P.encode(msg)
        assert [p.last for p in parts] == [False] * (len(parts) - 1) + [True]
        if data.draw(st.booleans()) and len(parts) > 1:  # cut off mid-message
            cut = data.draw(st.integers(1, len(parts) - 1))
            for part in parts[:cut]:
                assert asm.feed(part) is None
            assert asm.feed(P.Part(serial=serial, data=b"", abort=True)) is None
            continue
        for part in parts[:-1]:
            assert asm.feed(part) is None
        out.append(asm.feed(parts[-1]))
        assert out[-1] == msg


def test_reassembler_refuses_interleaving_and_oversize():
    asm = P.Reassembler(max_body=10)
    parts = P.split(P.Keyframe(index=1, t_capture=0.0, payload=b""), 5, 4)
    asm.feed(parts[0])
    with pytest.raises(ProtocolError, match="open"):
        asm.feed(P.Part(serial=6, data=b"x"))
    asm = P.Reassembler(max_body=10)
    big = P.split(P.Keyframe(index=1, t_capture=0.0, payload=bytes(40)), 0, 9)
    with pytest.raises(ProtocolError) as info:
        for part in big:
            asm.feed(part)
    assert info.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError, match="abort"):
        P.encode(P.Part(serial=0, data=b"x", abort=True))


# ----------------------------------------------------------------------------- limits (issue 13)


def _hello_with_config(raw: bytes, device_id: bytes = b"d") -> bytes:
    body = (struct.pack("!BH", P.PROTOCOL_VERSION, len(device_id)) + device_id
            + struct.pack("!H", 1) + b"s" + struct.pack("!I", len(raw)) + raw
            + struct.pack("!H", 0))
    return P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.MessageType.HELLO, len(body)) + body


@pytest.mark.parametrize("depth", [P.MAX_JSON_DEPTH + 1, 1000, 100_000])
def test_deep_json_is_a_protocol_error_everywhere(depth):
    raw = b'{"a":' * depth + b"1" + b"}" * depth
    frame = _hello_with_config(raw[:P.MAX_HELLO - 64] if len(raw) > P.MAX_HELLO - 64 else raw)
    for parse in (lambda: P.decode(frame),
                  lambda: P.decode_body(P.MessageType.HELLO, frame[P.HEADER.size:]),
                  lambda: P.Reassembler().feed(P.Part(0, frame, last=True))):
        with pytest.raises(ProtocolError) as info:  # not RecursionError
            parse()
        assert info.value.code == ErrorCode.MALFORMED, info.value
    with pytest.raises(ProtocolError):
        P.encode(P.Hello("d", "s", {"a": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}))


def test_json_depth_skips_strings():
    assert P.json_depth(b'{"a": "[[[[{{{{", "b": [1, "]]\\"[["]}') == 2
    P.parse_json(b'{"k": "' + b"[" * 1000 + b'"}', "x")  # brackets inside a string: fine


@pytest.mark.parametrize("raw", [b'{"B": 1e400}', b'{"B": -1e400}', b'{"B": NaN}',
                                 b'{"B": Infinity}', b'{"B": [1, -Infinity]}'])
def test_non_finite_json_numbers_are_refused(raw):
    with pytest.raises(ProtocolError, match="JSON") as info:
        P.decode(_hello_with_config(raw))
    assert info.value.code == ErrorCode.MALFORMED


def test_hello_size_is_limited_from_the_header():
    header = P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.MessageType.HELLO, 16 * 2**20)
    with pytest.raises(ProtocolError) as info:
        P.parse_header(header)  # refused before a single body byte is read
    assert info.value.code == ErrorCode.TOO_LARGE and str(P.MAX_HELLO) in info.value.text
    with pytest.raises(ProtocolError) as info:
        P.encode(P.Hello("d", "s", {"x": "y" * P.MAX_HELLO}))
    assert info.value.code == ErrorCode.TOO_LARGE
    assert P.parse_header(header[:-4] + struct.pack("!I", P.MAX_HELLO))[1] == P.MAX_HELLO


@pytest.mark.parametrize("name", ["a\nb", "dev 1", "x\r\n2026 stac.edge INFO forged", "é",
                                  "-lead", "a" * 65, 'q"uote'])
def test_names_cannot_forge_log_lines(name):
    with pytest.raises(ProtocolError):
        P.encode(P.Hello(name, "jpeg"))
    with pytest.raises(ProtocolError) as info:
        P.decode(_hello_with_config(b"{}", name.encode("utf-8")))
    assert info.value.code == ErrorCode.MALFORMED
    assert "\n" not in str(info.value) and "\r" not in str(info.value)


def test_escape_keeps_one_line():
    assert P.escape("a\nb\r\x00\x1b[31m") == "a\\nb\\r\\x00\\x1b[31m"
    assert P.escape("x" * 500, limit=10) == "x" * 10 + "..."


def test_report_carries_no_estimate_yet_as_nan():
    """A bandwidth estimator with nothing to go on yet (stac.bandwidth) reports NaN; a
    negative or infinite estimate is still refused."""
    msg = P.decode(P.encode(P.Report(second=0, bitrate_kbps=1.0, bandwidth_kbps=float("nan"))))
    assert msg.second == 0 and math.isnan(msg.bandwidth_kbps)
    for bad in (-1.0, float("inf")):
        with pytest.raises(P.ProtocolError, match="bandwidth_kbps"):
            P.encode(P.Report(second=0, bitrate_kbps=1.0, bandwidth_kbps=bad))


def test_escape_works_when_no_descriptor_is_left():
    """The edge escapes EMFILE errors: escape() must not need to open a file then."""
    code = (
        "import os, resource\n"
        "from stac.protocol import escape\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
        "held = []\n"
        "try:\n"
        "    while True:\n"
        "        held.append(os.open(os.devnull, os.O_RDONLY))\n"
        "except OSError:\n"
        "    pass\n"
        "print(escape(OSError(24, 'Too many open files\\n')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[Errno 24] Too many open files\\n"
