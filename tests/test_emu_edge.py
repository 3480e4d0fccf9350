"""The edge server over real loopback TCP: hostile connections are refused and logged while
a well-behaved device keeps getting every result (issue 6, reliability)."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest
import torch

from edge.models.registry import resolve_model
from stac import protocol as P
from stac.codec.labels import decode_labels
from stac.codec.reference import jpeg_encode
from stac.emu import streams
from stac.emu.build import hello_config, scheme_from_hello
from stac.emu.edge_main import EdgeOptions, EdgeServer
from stac.frames import open_source
from stac.protocol import ErrorCode
from stac.schemes import SchemeError, Stream, make_scheme
from stac.sim.runner import seed_everything

W, H = 64, 48
TOKEN = "s3cret"


@pytest.fixture(scope="module")
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `stac-sim emulate` runs its processes
    seed_everything(0)
    yield resolve_model("untrained:bisenet")  # mechanics only: bytes, queueing, sessions
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def jpeg_frames():
    frames = list(open_source("default", size=(W, H), max_frames=4))
    return [jpeg_encode(f.rgb, quality=50) for f in frames]


def _config() -> dict:
    return hello_config(make_scheme("jpeg", {"fps": 5.0}),
                        Stream(source_fps=25.0, frame_size=(W, H)))


class Edge:
    """An EdgeServer in this event loop, counting the agents it builds."""

    def __init__(self, model, **options):
        self.built = []

        def factory(hello):
            scheme, stream = scheme_from_hello(hello.scheme, hello.config)
            agent = scheme.build(stream, model).edge
            self.built.append(hello.device_id)
            return agent

        self.server = EdgeServer(EdgeOptions(**options), factory, model="untrained:bisenet")

    async def __aenter__(self):
        self.host, self.port = await self.server.start()
        return self

    async def __aexit__(self, *exc):
        await self.server.stop()


async def _good_device(port: int, payloads: list[bytes], device_id: str = "good",
                       token: str = TOKEN, pause: float = 0.0) -> list[P.Feedback]:
    """Handshake, send every keyframe (through parts, as the paced uplink does), collect
    one FEEDBACK per keyframe."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await streams.write_message(writer, P.Hello(device_id, "jpeg", _config(), token))
    ack = await streams.read_message(reader, timeout=10, idle_timeout=30)
    assert isinstance(ack, P.Hello), ack
    for i, payload in enumerate(payloads):
        for part in P.split(P.Keyframe(index=i, t_capture=i / 5, payload=payload), i, 300):
            await streams.write_message(writer, part)
        await asyncio.sleep(pause)
    out = []
    while len(out) < len(payloads):
        msg = await streams.read_message(reader, timeout=10, idle_timeout=60)
        assert isinstance(msg, P.Feedback), msg
        out.append(msg)
    await streams.write_message(writer, P.Bye("done"))
    writer.close()
    return out


async def _hostile(port: int, data: bytes, close: bool) -> P.Message | None:
    """Send raw bytes; return the edge's last message before it closed (None: nothing)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if close:
        writer.write_eof()
    last = None
    try:
        while (msg := await streams.read_message(reader, timeout=10, idle_timeout=10)) is not None:
            last = msg  # a HELLO acknowledgement may come before the ERROR
        return last
    except ConnectionResetError:
        return last
    finally:
        writer.close()


def _header(version: int, tag: int, length: int) -> bytes:
    return struct.pack("!2sBBI", b"ST", version, tag, length)


def test_hostile_connections_do_not_disturb_a_good_device(model, jpeg_frames, caplog):
    hello = P.encode(P.Hello("bad", "jpeg", _config(), TOKEN))
    cases = {
        "garbage": (b"\x16\x03\x01 this is not the protocol" * 3, False, ErrorCode.MALFORMED),
        "version": (_header(9, 1, 4) + b"abcd", False, ErrorCode.BAD_VERSION),
        "oversized": (_header(P.PROTOCOL_VERSION, 2, 2**31), False, ErrorCode.TOO_LARGE),
        "truncated": (hello[:-3], True, ErrorCode.TRUNCATED),
        "never completes": (hello[:-3], False, ErrorCode.TIMEOUT),
        "mid-session garbage": (hello + b"\x00" * 16, False, ErrorCode.MALFORMED),
        "keyframe before hello": (P.encode(P.Keyframe(0, 0.0, jpeg_frames[0])), False,
                                  ErrorCode.UNEXPECTED),
    }

    async def scenario():
        async with Edge(model, token=TOKEN, read_timeout=1.0) as edge:
            good = asyncio.create_task(_good_device(edge.port, jpeg_frames * 2, pause=0.05))
            answers = await asyncio.gather(*(_hostile(edge.port, data, close)
                                             for data, close, _ in cases.values()))
            feedback = await asyncio.wait_for(good, 60)
            return edge, answers, feedback

    with caplog.at_level(logging.INFO, logger="stac.edge"):
        edge, answers, feedback = asyncio.run(asyncio.wait_for(scenario(), 90))
    # the good device got every result, in order, as real label maps
    assert [f.index for f in feedback] == list(range(2 * len(jpeg_frames)))
    assert all(decode_labels(f.segmentation).shape == (H, W) for f in feedback)
    for (name, (_, close, code)), answer in zip(cases.items(), answers, strict=True):
        if close:  # the peer is gone: nothing to answer, but it is logged and counted
            assert answer is None or isinstance(answer, P.Error), name
        else:
            assert isinstance(answer, P.Error) and answer.code == code, (name, answer)
    summary = edge.server.summary()
    assert summary["refused"]["TRUNCATED"] == 1
    assert summary["refused"]["MALFORMED"] == 2
    good = [s for s in summary["devices"] if s["device_id"] == "good"]
    assert good[0]["feedbacks"] == 2 * len(jpeg_frames)
    assert edge.server.backlog.value == 0 and summary["compute"]["backlog_max"] >= 1
    assert sum("closing the connection" in r.getMessage() for r in caplog.records) == len(cases)


def test_wrong_token_is_refused_before_any_frame(model, jpeg_frames):
    async def scenario():
        async with Edge(model, token=TOKEN) as edge:
            reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
            writer.write(P.encode(P.Hello("intruder", "jpeg", _config(), "guess"))
                         + P.encode(P.Keyframe(0, 0.0, jpeg_frames[0])))
            answer = await streams.read_message(reader, timeout=5, idle_timeout=5)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            no_token = await _hostile(edge.port, P.encode(P.Hello("x", "jpeg", _config())),
                                      False)
            return edge, answer, no_token

    edge, answer, no_token = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert isinstance(answer, P.Error) and answer.code == ErrorCode.UNAUTHORIZED
    assert isinstance(no_token, P.Error) and no_token.code == ErrorCode.UNAUTHORIZED
    assert edge.built == []  # no agent was ever built, so no frame could be processed
    assert edge.server.worker.jobs == 0
    assert edge.server.summary()["refused"] == {"UNAUTHORIZED": 2}


def test_unknown_scheme_and_max_devices(model, jpeg_frames):
    async def scenario():
        async with Edge(model, max_devices=1) as edge:
            unknown = await _hostile(edge.port, P.encode(P.Hello("u", "nope", _config())),
                                     False)
            first = asyncio.create_task(_good_device(edge.port, jpeg_frames, token="",
                                                     pause=0.3))
            await asyncio.sleep(0.5)  # the first device holds the only slot
            busy = await _hostile(edge.port, P.encode(P.Hello("b", "jpeg", _config())), False)
            return unknown, busy, await asyncio.wait_for(first, 60)

    unknown, busy, feedback = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert isinstance(unknown, P.Error) and unknown.code == ErrorCode.UNKNOWN_SCHEME
    assert "nope" in unknown.text
    assert isinstance(busy, P.Error) and busy.code == ErrorCode.BUSY
    assert len(feedback) == len(jpeg_frames)


def test_scheme_travels_in_hello():
    scheme = make_scheme("stac", {"B": 0.5, "fps": 5.0})
    stream = Stream(source_fps=25.0, frame_size=(W, H), schedule={3: 2.0, 6: 10.0})
    hello = P.decode(P.encode(P.Hello("d", "stac", hello_config(scheme, stream))))
    assert scheme_from_hello("stac", hello.config) == (scheme, stream)
    with pytest.raises(SchemeError, match="exactly 'params' and 'stream'"):
        scheme_from_hello("stac", {**hello.config, "colour": "red"})
    with pytest.raises(SchemeError, match="has no parameter qp"):
        scheme_from_hello("stac", {**hello.config, "params": {"qp": 30}})
    with pytest.raises(SchemeError, match="source_fps, frame_size, schedule and tuner"):
        scheme_from_hello("stac", {"params": {}, "stream": {"fps": 5.0}})
