"""Messages between device and edge (DESIGN.md data flow), shared by both drivers.

These dataclasses are what the sans-IO halves exchange. Payloads are real bytes: the
encoded keyframe, the encoded segmentation and region-level map. The byte encoding of the
messages for the socket emulator lives here too: every message is one frame

    magic b"ST" | version u8 | type u8 | body length u32 | body

in network byte order. `encode` and `decode` are pure functions; `decode` validates
lengths, types and ranges and raises `ProtocolError` (with an `ErrorCode`) on anything
else. The asyncio stream helpers live in `stac.emu.streams`; the session rules (which
message may come when) in `stac.session`.
"""

from __future__ import annotations

import codecs
import enum
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
MAGIC = b"ST"
HEADER = struct.Struct("!2sBBI")  # magic, version, type, body length
MAX_BODY = 16 * 1024 * 1024  # bytes; a raw 1080p RGB frame is 6 MiB, keyframes are far smaller
MAX_HELLO = 64 * 1024  # bytes of a HELLO body (checked from the header, before the body)
MAX_JSON_DEPTH = 16  # nesting of the HELLO config ({"a": [1]} is depth 2)
MAX_NAME = 64  # bytes of a device id or scheme name
#: what a device id or scheme name may hold: no spaces, quotes or control characters, so
#: that it cannot forge a log line or a CSV field
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,63}")
MAX_TOKEN = 256
MAX_TEXT = 4096  # bytes of an ERROR/BYE text
MAX_FPS = 1000.0
MAX_KNOBS = 16  # knobs of one configuration
_U32 = 2**32 - 1


class ErrorCode(enum.IntEnum):
    """Why a message was refused; carried by `ProtocolError` and the ERROR message."""

    MALFORMED = 1  # bad magic, bad field, trailing bytes, out-of-range value
    BAD_VERSION = 2
    UNKNOWN_TYPE = 3
    TOO_LARGE = 4  # length prefix above the maximum body size
    TRUNCATED = 5  # the stream ended inside a message
    TIMEOUT = 6  # a message did not complete within the read timeout
    UNAUTHORIZED = 7  # missing or wrong token
    UNEXPECTED = 8  # a valid message at the wrong point of the session
    BUSY = 9  # the edge serves its maximum number of devices
    UNKNOWN_SCHEME = 10
    INTERNAL = 11  # the edge failed while processing a valid message


class ProtocolError(ValueError):
    """A message that cannot be encoded or was refused while parsing."""

    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(f"{code.name}: {text}")
        self.code = ErrorCode(code)
        self.text = text


@dataclass(frozen=True)
class Hello:
    """Session start: the device names its scheme and configuration."""

    device_id: str
    scheme: str
    config: dict[str, Any] = field(default_factory=dict)
    token: str = ""
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Keyframe:
    """An encoded keyframe on the uplink; `payload` is the codec's real bitstream."""

    index: int
    t_capture: float
    payload: bytes


@dataclass(frozen=True)
class Feedback:
    """The edge's answer to keyframe `index`: its segmentation and region levels, as bytes."""

    index: int
    segmentation: bytes
    levels: bytes = b""


@dataclass(frozen=True)
class Config:
    """A scheme's run-time knobs from `t_effective` on (STAC §VI: B and fps; a baseline's
    QP, quality, table level...), named as the scheme's parameters; `fps` is in every one."""

    knobs: tuple[tuple[str, float], ...]
    t_effective: float = 0.0

    @classmethod
    def of(cls, knobs: Mapping[str, float], t_effective: float = 0.0) -> Config:
        """A configuration from a {knob name: value} mapping."""
        return cls(tuple((str(k), float(v)) for k, v in knobs.items()), float(t_effective))

    def __getitem__(self, name: str) -> float:
        for key, value in self.knobs:
            if key == name:
                return value
        raise KeyError(f"configuration has no knob {name!r}; it has {list(self.as_dict())}")

    @property
    def fps(self) -> float:
        """The keyframe rate (every scheme has it)."""
        return self["fps"]

    def as_dict(self) -> dict[str, float]:
        return dict(self.knobs)

    def replace(self, t_effective: float, **knobs: float) -> Config:
        """The same knobs with `knobs` changed, effective from `t_effective`."""
        unknown = set(knobs) - set(self.as_dict())
        if unknown:
            raise KeyError(f"configuration has no knobs {sorted(unknown)}")
        return Config.of({**self.as_dict(), **knobs}, t_effective)


@dataclass(frozen=True)
class Content:
    """Content metrics of one second (STAC §VI): complexity c and inter-frame difference d.
    (Scheme casva: c is the kilobits of the second's first frame pre-encoded at CASVA's
    reference configuration, `device.offload.pre_encode_kbits`.)"""

    second: int
    c: float
    d: float


@dataclass(frozen=True)
class Bye:
    """Orderly end of a session, from either side."""

    reason: str = ""


@dataclass(frozen=True)
class Error:
    """A refusal: the code of the problem and a readable text; the sender then closes."""

    code: int
    text: str


@dataclass(frozen=True)
class Report:
    """The device's account of one second of its uplink, which starts the edge's
    configuration step (STAC §VI): bitrate sent and bandwidth estimated, in kbps (NaN:
    the estimator has nothing to go on yet)."""

    second: int
    bitrate_kbps: float
    bandwidth_kbps: float


@dataclass(frozen=True)
class Part:
    """A piece of one encoded message on the paced uplink (`serial` numbers the message).

    The emulated link releases bytes at the trace's rate; a message still in transmission
    when a new configuration starts is cut off by a part with `abort` set (STAC §VII)."""

    serial: int
    data: bytes
    last: bool = False
    abort: bool = False


Message = Hello | Keyframe | Feedback | Config | Content | Bye | Error | Report | Part


class MessageType(enum.IntEnum):
    """The type tag of each message on the wire."""

    HELLO = 1
    KEYFRAME = 2
    FEEDBACK = 3
    CONFIG = 4
    CONTENT = 5
    BYE = 6
    ERROR = 7
    REPORT = 8
    PART = 9


_TYPE_OF = {Hello: MessageType.HELLO, Keyframe: MessageType.KEYFRAME,
            Feedback: MessageType.FEEDBACK, Config: MessageType.CONFIG,
            Content: MessageType.CONTENT, Bye: MessageType.BYE, Error: MessageType.ERROR,
            Report: MessageType.REPORT, Part: MessageType.PART}
_LAST, _ABORT = 1, 2


# ----------------------------------------------------------------------------- encoding


def _bad(text: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED, text)


def _check_u32(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U32:
        raise _bad(f"{name} must be an integer in [0, 2**32), got {value!r}")
    return value


def _check_float(name: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise _bad(f"{name} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise _bad(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise _bad(f"{name} must be <= {high}, got {value!r}")
    return value


def _check_estimate(name: str, value: Any) -> float:
    """A bandwidth estimate: >= 0, or NaN for "no estimate yet" (stac.bandwidth)."""
    if isinstance(value, float) and math.isnan(value):
        return value
    return _check_float(name, value, low=0.0)


def _check_knob(name: str, value: Any) -> float:
    """A configuration knob's value: finite; `fps` in (0, MAX_FPS]."""
    if name == "fps":
        return _check_float("Config fps", value, 0.0, MAX_FPS, low_open=True)
    return _check_float(f"Config {name}", value)


def _check_bytes(name: str, value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise _bad(f"{name} must be bytes, got {type(value).__name__}")
    return bytes(value)


def _str_bytes(name: str, value: Any, max_len: int, allow_empty: bool = True) -> bytes:
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string, got {type(value).__name__}")
    raw = value.encode("utf-8")
    if len(raw) > max_len:
        raise _bad(f"{name} is {len(raw)} bytes, above the maximum {max_len}")
    if not allow_empty and not raw:
        raise _bad(f"{name} must not be empty")
    return raw


def _check_name(name: str, value: Any) -> bytes:
    raw = _str_bytes(name, value, MAX_NAME, allow_empty=False)
    if not NAME_PATTERN.fullmatch(value):
        raise _bad(f"{name} must match {NAME_PATTERN.pattern}, got {escape(value)}")
    return raw


# The codec is looked up (imported from disk) now, not at the first escape(): the edge escapes
# the text of EMFILE errors, when no descriptor is left to open the codec's module.
codecs.lookup("unicode_escape")


def escape(text: Any, limit: int = 200) -> str:
    """`text` safe for one log line: control characters, quotes and non-ASCII escaped
    (so a peer's newline cannot forge a line), cut to `limit` characters."""
    text = str(text)
    out = text[:limit].encode("unicode_escape").decode("ascii")
    return out + "..." if len(text) > limit else out


def _pack_str(raw: bytes) -> bytes:
    return struct.pack("!H", len(raw)) + raw


def _pack_blob(raw: bytes) -> bytes:
    return struct.pack("!I", len(raw)) + raw


def _check_config(config: Any) -> bytes:
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise _bad("Hello.config must be a dict with string keys")
    try:
        raw = json.dumps(config, sort_keys=True, allow_nan=False,
                         separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise _bad(f"Hello.config is not JSON-serialisable with finite numbers ({exc})") from exc
    parse_json(raw, "Hello.config")  # what the edge would refuse is refused here already
    return raw


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_depth(raw: bytes) -> int:
    """Nesting depth of a JSON text, counted without parsing it (strings skipped), so
    that a deep text is refused before a recursive parser sees it."""
    skeleton = np.frombuffer(_JSON_STRING.sub(b'""', raw), np.uint8)
    step = (np.isin(skeleton, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(skeleton, (ord("]"), ord("}"))))
    return int(np.cumsum(step).max(initial=0))


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows a float")
    return value


def parse_json(raw: bytes, what: str, max_depth: int = MAX_JSON_DEPTH,
               max_size: int = MAX_HELLO) -> Any:
    """A bounded JSON text -> its value: at most `max_size` bytes and `max_depth` levels,
    finite numbers only (no NaN, Infinity or 1e400); anything else is MALFORMED."""
    if len(raw) > max_size:
        raise ProtocolError(ErrorCode.TOO_LARGE,
                            f"{what} is {len(raw)} bytes of JSON, above the maximum {max_size}")
    depth = json_depth(raw)
    if depth > max_depth:
        raise _bad(f"{what} is nested {depth} levels deep, above the maximum {max_depth}")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant,
                          parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(f"{what} is not a valid JSON object or value ({escape(exc)})") from exc


def _encode_body(msg: Message) -> bytes:
    if isinstance(msg, Hello):
        version = _check_u32("Hello.version", msg.version)
        if version > 255:
            raise _bad(f"Hello.version must fit in a byte, got {version}")
        return (struct.pack("!B", version)
                + _pack_str(_check_name("Hello.device_id", msg.device_id))
                + _pack_str(_check_name("Hello.scheme", msg.scheme))
                + _pack_blob(_check_config(msg.config))
                + _pack_str(_str_bytes("Hello.token", msg.token, MAX_TOKEN)))
    if isinstance(msg, Keyframe):
        return (struct.pack("!Id", _check_u32("Keyframe.index", msg.index),
                            _check_float("Keyframe.t_capture", msg.t_capture, low=0.0))
                + _pack_blob(_check_bytes("Keyframe.payload", msg.payload)))
    if isinstance(msg, Feedback):
        return (struct.pack("!I", _check_u32("Feedback.index", msg.index))
                + _pack_blob(_check_bytes("Feedback.segmentation", msg.segmentation))
                + _pack_blob(_check_bytes("Feedback.levels", msg.levels)))
    if isinstance(msg, Config):
        if not 0 < len(msg.knobs) <= MAX_KNOBS:
            raise _bad(f"Config carries 1 to {MAX_KNOBS} knobs, got {len(msg.knobs)}")
        if "fps" not in dict(msg.knobs):
            raise _bad("Config must carry fps")
        body = struct.pack("!dB", _check_float("Config.t_effective", msg.t_effective, low=0.0),
                           len(msg.knobs))
        for name, value in msg.knobs:
            body += (_pack_str(_str_bytes("Config knob", name, MAX_NAME, False))
                     + struct.pack("!d", _check_knob(name, value)))
        return body
    if isinstance(msg, Content):
        return struct.pack("!Idd", _check_u32("Content.second", msg.second),
                           _check_float("Content.c", msg.c),
                           _check_float("Content.d", msg.d, low=0.0))
    if isinstance(msg, Bye):
        return _pack_str(_str_bytes("Bye.reason", msg.reason, MAX_TEXT))
    if isinstance(msg, Error):
        code = msg.code
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 0xFFFF:
            raise _bad(f"Error.code must be an integer in [0, 65535], got {code!r}")
        return struct.pack("!H", code) + _pack_str(_str_bytes("Error.text", msg.text, MAX_TEXT))
    if isinstance(msg, Report):
        return struct.pack("!Idd", _check_u32("Report.second", msg.second),
                           _check_float("Report.bitrate_kbps", msg.bitrate_kbps, low=0.0),
                           _check_estimate("Report.bandwidth_kbps", msg.bandwidth_kbps))
    if isinstance(msg, Part):
        if msg.abort and (msg.last or msg.data):
            raise _bad("an aborting Part carries no data and is not `last`")
        flags = (_LAST if msg.last else 0) | (_ABORT if msg.abort else 0)
        return (struct.pack("!IB", _check_u32("Part.serial", msg.serial), flags)
                + _check_bytes("Part.data", msg.data))
    raise _bad(f"not a protocol message: {type(msg).__name__}")


def encode(msg: Message, max_body: int = MAX_BODY) -> bytes:
    """One message -> its frame on the wire (header + body); validates every field."""
    body = _encode_body(msg)
    if len(body) > max_body:
        raise ProtocolError(ErrorCode.TOO_LARGE,
                            f"{type(msg).__name__} body is {len(body)} bytes, "
                            f"above the maximum {max_body}")
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, _TYPE_OF[type(msg)], len(body)) + body


# ----------------------------------------------------------------------------- parsing


class _Cursor:
    """Reads fields off a body, failing with MALFORMED on any short read."""

    def __init__(self, body: bytes, what: str) -> None:
        self.body = memoryview(body)
        self.pos = 0
        self.what = what

    def take(self, n: int, field_name: str) -> bytes:
        if self.pos + n > len(self.body):
            raise _bad(f"{self.what}: {field_name} needs {n} bytes, "
                       f"only {len(self.body) - self.pos} left")
        out = bytes(self.body[self.pos:self.pos + n])
        self.pos += n
        return out

    def unpack(self, fmt: str, field_name: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), field_name))

    def string(self, field_name: str, max_len: int) -> str:
        (n,) = self.unpack("!H", f"{field_name} length")
        if n > max_len:
            raise _bad(f"{self.what}: {field_name} is {n} bytes, above the maximum {max_len}")
        try:
            return self.take(n, field_name).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad(f"{self.what}: {field_name} is not UTF-8 ({exc})") from exc

    def blob(self, field_name: str) -> bytes:
        (n,) = self.unpack("!I", f"{field_name} length")
        return self.take(n, field_name)

    def done(self) -> None:
        if self.pos != len(self.body):
            raise _bad(f"{self.what}: {len(self.body) - self.pos} trailing bytes")


def parse_header(header: bytes, max_body: int = MAX_BODY) -> tuple[MessageType, int]:
    """The 8-byte frame header -> (message type, body length), validated."""
    if len(header) != HEADER.size:
        raise ProtocolError(ErrorCode.TRUNCATED,
                            f"header needs {HEADER.size} bytes, got {len(header)}")
    magic, version, tag, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise _bad(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION,
                            f"protocol version {version}, this side speaks {PROTOCOL_VERSION}")
    try:
        kind = MessageType(tag)
    except ValueError:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {tag}") from None
    limit = min(max_body, MAX_HELLO) if kind == MessageType.HELLO else max_body
    if length > limit:
        raise ProtocolError(ErrorCode.TOO_LARGE,
                            f"{kind.name} body of {length} bytes, above the maximum {limit}")
    return kind, length


@dataclass(frozen=True)
class HelloFields:
    """A HELLO with its config still raw JSON: what the edge reads to check the token
    before it parses anything the peer chose (`hello_config` finishes the job)."""

    version: int
    device_id: str
    scheme: str
    raw_config: bytes
    token: str


def decode_hello_fields(body: bytes) -> HelloFields:
    """The fixed fields of a HELLO body (names checked); the config is left unparsed."""
    if len(body) > MAX_HELLO:
        raise ProtocolError(ErrorCode.TOO_LARGE,
                            f"HELLO body of {len(body)} bytes, above the maximum {MAX_HELLO}")
    cur = _Cursor(body, "HELLO")
    (version,) = cur.unpack("!B", "version")
    device_id = cur.string("device_id", MAX_NAME)
    scheme = cur.string("scheme", MAX_NAME)
    raw_config = cur.blob("config")
    token = cur.string("token", MAX_TOKEN)
    cur.done()
    if version != PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"HELLO for protocol version {version}, "
                            f"this side speaks {PROTOCOL_VERSION}")
    for name, value in (("device_id", device_id), ("scheme", scheme)):
        if not NAME_PATTERN.fullmatch(value):
            raise _bad(f"HELLO: {name} must match {NAME_PATTERN.pattern}, got {escape(value)}")
    return HelloFields(version, device_id, scheme, raw_config, token)


def hello_config(fields: HelloFields) -> Hello:
    """Finish decoding a HELLO: parse its config (bounded JSON object)."""
    config = parse_json(fields.raw_config, "HELLO: config")
    if not isinstance(config, dict):
        raise _bad(f"HELLO: config must be a JSON object, got {type(config).__name__}")
    return Hello(device_id=fields.device_id, scheme=fields.scheme, config=config,
                 token=fields.token, version=fields.version)


def decode_body(kind: MessageType, body: bytes) -> Message:
    """The body of a message of type `kind` -> the message, validated."""
    cur = _Cursor(body, kind.name)
    if kind == MessageType.HELLO:
        return hello_config(decode_hello_fields(body))
    if kind == MessageType.KEYFRAME:
        index, t_capture = cur.unpack("!Id", "index, t_capture")
        payload = cur.blob("payload")
        cur.done()
        return Keyframe(index=index, t_capture=_check_float("KEYFRAME t_capture", t_capture, 0.0),
                        payload=payload)
    if kind == MessageType.FEEDBACK:
        (index,) = cur.unpack("!I", "index")
        segmentation = cur.blob("segmentation")
        levels = cur.blob("levels")
        cur.done()
        return Feedback(index=index, segmentation=segmentation, levels=levels)
    if kind == MessageType.CONFIG:
        t_eff, count = cur.unpack("!dB", "t_effective, knob count")
        if not 0 < count <= MAX_KNOBS:
            raise _bad(f"CONFIG carries 1 to {MAX_KNOBS} knobs, got {count}")
        knobs = []
        for _ in range(count):
            name = cur.string("knob name", MAX_NAME)
            (value,) = cur.unpack("!d", f"knob {name!r}")
            knobs.append((name, _check_knob(name, value)))
        cur.done()
        if len({k for k, _ in knobs}) != count:
            raise _bad("CONFIG names a knob twice")
        if "fps" not in dict(knobs):
            raise _bad("CONFIG must carry fps")
        return Config(knobs=tuple(knobs),
                      t_effective=_check_float("CONFIG t_effective", t_eff, 0.0))
    if kind == MessageType.CONTENT:
        second, c, d = cur.unpack("!Idd", "second, c, d")
        cur.done()
        return Content(second=second, c=_check_float("CONTENT c", c),
                       d=_check_float("CONTENT d", d, 0.0))
    if kind == MessageType.BYE:
        reason = cur.string("reason", MAX_TEXT)
        cur.done()
        return Bye(reason=reason)
    if kind == MessageType.ERROR:
        (code,) = cur.unpack("!H", "code")
        text = cur.string("text", MAX_TEXT)
        cur.done()
        return Error(code=code, text=text)
    if kind == MessageType.REPORT:
        second, bitrate, bandwidth = cur.unpack("!Idd", "second, bitrate, bandwidth")
        cur.done()
        return Report(second=second,
                      bitrate_kbps=_check_float("REPORT bitrate_kbps", bitrate, 0.0),
                      bandwidth_kbps=_check_estimate("REPORT bandwidth_kbps", bandwidth))
    if kind == MessageType.PART:
        serial, flags = cur.unpack("!IB", "serial, flags")
        data = bytes(cur.body[cur.pos:])
        if flags & ~(_LAST | _ABORT):
            raise _bad(f"PART: unknown flags {flags:#x}")
        if flags & _ABORT and (flags & _LAST or data):
            raise _bad("PART: an abort carries no data and is not last")
        return Part(serial=serial, data=data, last=bool(flags & _LAST),
                    abort=bool(flags & _ABORT))
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def decode(frame: bytes, max_body: int = MAX_BODY) -> Message:
    """Exactly one frame (header + body) -> the message; anything else is a ProtocolError."""
    frame = bytes(frame)
    kind, length = parse_header(frame[:HEADER.size], max_body)
    body = frame[HEADER.size:]
    if len(body) < length:
        raise ProtocolError(ErrorCode.TRUNCATED,
                            f"{kind.name} body needs {length} bytes, got {len(body)}")
    if len(body) > length:
        raise _bad(f"{len(body) - length} bytes after the {kind.name} message")
    return decode_body(kind, body)


def split(msg: Message, serial: int, part_bytes: int) -> list[Part]:
    """One message -> the parts that carry its frame over the paced uplink, in order."""
    if part_bytes < 1:
        raise ValueError(f"part_bytes must be positive, got {part_bytes}")
    frame = encode(msg)
    pieces = [frame[i:i + part_bytes] for i in range(0, len(frame), part_bytes)]
    return [Part(serial=serial, data=p, last=i == len(pieces) - 1) for i, p in enumerate(pieces)]


class Reassembler:
    """Receiver side of `split`: parts in, whole messages out; aborted messages vanish."""

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self.max_body = max_body
        self.serial: int | None = None
        self.buffer = bytearray()
        self.aborted = 0  # messages cut off by the sender

    def feed(self, part: Part) -> Message | None:
        """Add one part; the message it completes, or None. Raises ProtocolError."""
        if self.serial is not None and part.serial != self.serial:
            raise _bad(f"PART of message {part.serial} while message {self.serial} is open")
        if part.abort:
            self.aborted += self.serial is not None
            self.serial, self.buffer = None, bytearray()
            return None
        self.serial = part.serial
        self.buffer += part.data
        if len(self.buffer) >= HEADER.size:
            parse_header(bytes(self.buffer[:HEADER.size]), self.max_body)
        if len(self.buffer) > HEADER.size + self.max_body:
            raise ProtocolError(ErrorCode.TOO_LARGE, "reassembled message above the maximum")
        if not part.last:
            return None
        frame, self.serial, self.buffer = bytes(self.buffer), None, bytearray()
        msg = decode(frame, self.max_body)
        if isinstance(msg, Part):
            raise _bad("a PART inside a PART")
        return msg
