"""The edge under hostile clients (issue 13): work before the token, oversized and deep
HELLOs, connection caps and the authentication deadline, bounded queues and fair
scheduling, corrupt and oversized keyframes, client-chosen table paths, a failing summary
write. Every case runs against a real EdgeServer over loopback TCP."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.models.registry import resolve_model
from stac import protocol as P
from stac.codec.errors import BitstreamError
from stac.codec.reference import X264Decoder, X264Encoder, jpeg_decode, jpeg_encode
from stac.emu import streams
from stac.emu.auth import read_token
from stac.emu.build import (
    choose_tables,
    choose_tuner,
    edge_table_files,
    hello_config,
    scheme_from_hello,
)
from stac.emu.edge_main import ComputeWorker, EdgeOptions, EdgeServer, FairQueue, serve
from stac.frames import open_source
from stac.protocol import ErrorCode
from stac.schemes import SchemeError, Stream, make_scheme
from stac.sim.runner import seed_everything

W, H = 64, 48
TOKEN = "s3cret"


@pytest.fixture(scope="module")
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    seed_everything(0)
    yield resolve_model("untrained:bisenet")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def jpeg_frames():
    return [jpeg_encode(f.rgb, quality=50) for f in open_source("default", size=(W, H),
                                                                max_frames=2)]


def _config(**stream) -> dict:
    return hello_config(make_scheme("jpeg", {"fps": 5.0}),
                        Stream(**{"source_fps": 25.0, "frame_size": (W, H), **stream}))


def _factory(model, built: list):
    def factory(hello):
        built.append(hello.device_id)
        scheme, stream = scheme_from_hello(hello.scheme, hello.config)
        return scheme.build(stream, model).edge
    return factory


async def _start(model, built=None, **options) -> EdgeServer:
    server = EdgeServer(EdgeOptions(**options), _factory(model, [] if built is None else built))
    await server.start()
    return server


def _port(server: EdgeServer) -> int:
    return server._server.sockets[0].getsockname()[1]


async def _answer(port: int, data: bytes, wait: float = 10.0) -> tuple[P.Message | None, float]:
    """Send raw bytes, keep the connection open; the edge's first message and its delay."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    writer.write(data)
    await writer.drain()
    try:
        msg = await streams.read_message(reader, timeout=wait, idle_timeout=wait)
    except ConnectionResetError:
        msg = None
    writer.close()
    return msg, time.monotonic() - t0


async def _hello(port: int, device_id: str = "good", token: str = TOKEN):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await streams.write_message(writer, P.Hello(device_id, "jpeg", _config(), token))
    ack = await streams.read_message(reader, timeout=10, idle_timeout=30)
    assert isinstance(ack, P.Hello), ack
    return reader, writer


def _with_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0) declaring another size: a tiny decompression bomb."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[:i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9:]


def test_wrong_token_is_refused_before_the_config_is_parsed(model):
    deep = b"[" * 5000 + b"]" * 5000  # main parsed it first: RecursionError, INTERNAL
    body = (struct.pack("!BH", P.PROTOCOL_VERSION, 3) + b"bad" + struct.pack("!H", 4) + b"jpeg"
            + struct.pack("!I", len(deep)) + deep + struct.pack("!H", 5) + b"guess")
    frame = P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.MessageType.HELLO, len(body)) + body

    async def scenario():
        server = await _start(model, token=TOKEN)
        try:
            wrong = await _answer(_port(server), frame)
            server.options = EdgeOptions()  # no token: now the config is parsed, and refused
            parsed = await _answer(_port(server), frame)
            return wrong, parsed, server.summary()
        finally:
            await server.stop()

    (wrong, _), (parsed, _), summary = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert isinstance(wrong, P.Error) and wrong.code == ErrorCode.UNAUTHORIZED
    assert isinstance(parsed, P.Error) and parsed.code == ErrorCode.MALFORMED
    assert "deep" in parsed.text
    assert summary["refused"] == {"UNAUTHORIZED": 1, "MALFORMED": 1}


def test_oversized_hello_is_refused_from_its_header(model):
    header = P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.MessageType.HELLO, 16 * 2**20)

    async def scenario():
        server = await _start(model, read_timeout=5.0)
        try:
            return await _answer(_port(server), header + b"\x01" * 1000)
        finally:
            await server.stop()

    answer, took = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert isinstance(answer, P.Error) and answer.code == ErrorCode.TOO_LARGE, answer
    assert took < 2.0  # at once, not after the read timeout of a body it never reads


def test_unauthenticated_connections_are_capped_and_timed_out(model, jpeg_frames):
    hello = P.encode(P.Hello("slow", "jpeg", _config(), TOKEN))

    async def trickle(port: int) -> tuple[P.Message | None, float]:
        """A slowloris: a valid HELLO, one byte every 0.2 s (4 bytes before the deadline)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        for b in hello[:4]:
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(0.2)
        try:
            msg = await streams.read_message(reader, timeout=5, idle_timeout=5)
        except (ConnectionError, P.ProtocolError):
            msg = None
        writer.close()
        return msg, time.monotonic() - t0

    async def scenario():
        server = await _start(model, token=TOKEN, max_unauthenticated=3, hello_timeout=1.0,
                              read_timeout=5.0)
        port = _port(server)
        try:
            slow = [asyncio.create_task(trickle(port)) for _ in range(3)]
            await asyncio.sleep(0.3)
            busy = await _answer(port, b"")  # a 4th: turned away at once, nothing read
            timed_out = await asyncio.gather(*slow)
            reader, writer = await _hello(port)  # the slots are free again
            for part in P.split(P.Keyframe(0, 0.0, jpeg_frames[0]), 0, 500):
                await streams.write_message(writer, part)
            feedback = await streams.read_message(reader, timeout=30, idle_timeout=30)
            writer.close()
            return busy, timed_out, feedback, server.summary()
        finally:
            await server.stop()

    busy, timed_out, feedback, summary = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert isinstance(busy[0], P.Error) and busy[0].code == ErrorCode.BUSY and busy[1] < 1.0
    for msg, took in timed_out:  # the whole HELLO within the deadline, however it trickles
        assert isinstance(msg, P.Error) and msg.code == ErrorCode.TIMEOUT, msg
        assert took < 1.0 + 1.5
    assert isinstance(feedback, P.Feedback)
    assert summary["connections"]["unauthenticated_max"] == 3
    assert summary["refused"]["BUSY"] == 1 and summary["refused"]["TIMEOUT"] == 3


def test_keyframe_queue_is_bounded(model, jpeg_frames):
    n = 40

    async def scenario():
        server = await _start(model, queued_keyframes=3)
        try:
            reader, writer = await _hello(_port(server), token="")
            for i in range(n):  # a burst, without reading anything back
                writer.write(P.encode(P.Keyframe(i, i / 25, jpeg_frames[i % 2])))
            await writer.drain()
            got = []
            while len(got) < n:
                msg = await streams.read_message(reader, timeout=30, idle_timeout=60)
                assert isinstance(msg, P.Feedback), msg
                got.append(msg.index)
            writer.close()
            return got, server.summary()
        finally:
            await server.stop()

    got, summary = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert got == list(range(n))  # nothing lost: the device was slowed down, not dropped
    assert summary["compute"]["backlog_max"] <= 3 + 1  # queued + the one being computed


def test_fair_queue_round_robin():
    q = FairQueue()
    for i in range(3):
        q.push("b", 1, f"b-key{i}")
    q.push("b", 0, "b-config")
    q.push("a", 1, "a-key")
    assert [q.pop() for _ in range(len(q))] == ["b-config", "a-key", "b-key0", "b-key1",
                                                "b-key2"]
    with pytest.raises(IndexError):
        q.pop()


def test_worker_serves_devices_fairly():
    order = []

    async def scenario():
        worker = ComputeWorker()
        task = asyncio.create_task(worker.run())
        jobs = [worker.call(lambda i=i: (time.sleep(0.01), order.append(f"b{i}")),
                            priority=0 if i % 2 else 1, owner="b") for i in range(10)]
        jobs.append(worker.call(lambda: order.append("a"), priority=1, owner="a"))
        await asyncio.gather(*jobs)
        task.cancel()
        worker.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    # device b's configuration steps (priority 0) go ahead of its own keyframes only
    assert order.index("a") <= 1, order
    assert [x for x in order if x != "a"][:5] == ["b1", "b3", "b5", "b7", "b9"]


def test_corrupt_keyframe_is_answered_at_once_as_malformed(model, jpeg_frames, caplog):
    cases = {"garbage": b"\xff\xd8 not a jpeg at all",
             "other size": _with_sof_size(jpeg_frames[0], 640, 480),
             "bomb": _with_sof_size(jpeg_frames[0], 13000, 13000)}

    async def one(port: int, payload: bytes):
        reader, writer = await _hello(port, token="")
        await streams.write_message(writer, P.Keyframe(7, 0.0, payload))
        t0 = time.monotonic()  # then silence: the answer must not wait for the device
        msg = await streams.read_message(reader, timeout=10, idle_timeout=10)
        writer.close()
        return msg, time.monotonic() - t0

    async def scenario():
        server = await _start(model, idle_timeout=60.0)
        try:
            return [await one(_port(server), p) for p in cases.values()]
        finally:
            await server.stop()

    with caplog.at_level(logging.INFO, logger="stac.edge"):
        answers = asyncio.run(asyncio.wait_for(scenario(), 60))
    for name, (msg, took) in zip(cases, answers, strict=True):
        assert isinstance(msg, P.Error) and msg.code == ErrorCode.MALFORMED, (name, msg)
        assert "keyframe 7" in msg.text and took < 5.0, (name, msg, took)
    assert "640x480" in answers[1][0].text and "13000x13000" in answers[2][0].text
    assert not any(r.exc_info for r in caplog.records)  # one line each, no traceback
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("keyframe 7" in r.getMessage() for r in warned) == len(cases)


def test_decoders_check_the_frame_size_and_bombs(jpeg_frames):
    with pytest.raises(BitstreamError, match="13000x13000"):
        jpeg_decode(_with_sof_size(jpeg_frames[0], 13000, 13000), (W, H))
    with pytest.raises(BitstreamError):  # Pillow's DecompressionBombError, as a bitstream error
        jpeg_decode(_with_sof_size(jpeg_frames[0], 65000, 65000))
    assert jpeg_decode(jpeg_frames[0], (W, H)).shape == (H, W, 3)
    rgb = np.zeros((H, W, 3), np.uint8)
    packet = X264Encoder(W, H, qp=30).encode(rgb)
    with pytest.raises(BitstreamError, match="session"):
        X264Decoder(W // 2, H // 2).decode(packet)
    assert X264Decoder(W, H).decode(packet).shape == (H, W, 3)


def test_tables_are_chosen_by_name_only(tmp_path):
    known = edge_table_files([tmp_path / "mine.npz"])
    assert "bisenet" in known and known["mine"] == str(tmp_path / "mine.npz")
    scheme = make_scheme("stac", {"tables": "bisenet"})
    assert choose_tables(scheme, known).tables == known["bisenet"]
    assert choose_tables(make_scheme("h264"), known) == make_scheme("h264")  # no tables
    existing = str(Path(known["bisenet"]).resolve())  # a real file, named by path
    texts = []
    for name in (existing, "/no/such/file.npz", "../../etc/passwd", "../" + "x" * 500):
        with pytest.raises(ValueError, match="not a table set of this edge") as info:
            choose_tables(make_scheme("stac", {"tables": name}), known)
        texts.append(str(info.value).replace(P.escape(name, 80), "NAME"))
    assert len(set(texts)) == 1  # the same answer whether or not the file exists


def test_tuner_files_are_only_those_the_edge_offers(tmp_path):
    offered = tmp_path / "profiles.csv"
    stream = Stream(source_fps=25.0, frame_size=(W, H), tuner="offline:profiles.csv")
    assert choose_tuner(stream, [offered]).tuner == f"offline:{offered}"
    assert choose_tuner(Stream(source_fps=25.0, frame_size=(W, H)), []).tuner == "fixed"
    for arg in ("/etc/passwd", "../profiles.csv", str(tmp_path / "other.csv")):
        with pytest.raises(SchemeError, match="not offered by this edge"):
            choose_tuner(replace(stream, tuner=f"offline:{arg}"), [offered])


@pytest.mark.parametrize("part,field,value", [
    ("params", "fps", 0), ("params", "fps", -5), ("stream", "source_fps", 0),
    ("stream", "frame_size", [13000, 13000]), ("stream", "frame_size", [0, 5]),
    ("params", "quality", 0), ("stream", "schedule", {"3": 0})])
def test_zero_and_absurd_config_values_are_refused(part, field, value):
    config = _config()
    config[part] = {**config[part], field: value}
    with pytest.raises(SchemeError, match=field.split("_")[0]):
        scheme_from_hello("jpeg", config)


def test_summary_write_failure_does_not_stop_the_edge(model, tmp_path, caplog):
    (tmp_path / "edge_summary.json.tmp").mkdir()  # every write of the summary fails

    async def scenario():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(4.5, stop.set)  # two periodic writes, then stop
        return await serve(EdgeOptions(), _factory(model, []), out=tmp_path, stop=stop)

    with caplog.at_level(logging.INFO, logger="stac.edge"):
        summary = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert summary["devices"] == []
    errors = [r for r in caplog.records if "edge_summary.json" in r.getMessage()]
    assert len(errors) == 1 and not errors[0].exc_info  # logged once, no traceback
    assert any("no token set" in r.getMessage() for r in caplog.records)


def test_token_from_file_or_environment(tmp_path):
    path = tmp_path / "token"
    path.write_text("from-file\n")
    env = {"STAC_TOKEN": "from-env"}
    assert read_token(path, "from-flag", env) == "from-file"
    assert read_token(None, "from-flag", env) == "from-flag"
    assert read_token(None, None, env) == "from-env"
    assert read_token(None, None, {}) == ""
