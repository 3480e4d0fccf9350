"""The emulated uplink over a real loopback socket: pacing to the trace, delay, discard."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np

from stac import protocol as P
from stac.emu.link import StreamClock, Uplink
from stac.traces import Trace


class Receiver:
    """A loopback TCP server that records every chunk of bytes it receives, with its time."""

    def __init__(self, clock: StreamClock) -> None:
        self.clock = clock
        self.chunks: list[tuple[float, bytes]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        while data := await reader.read(65536):
            self.chunks.append((self.clock.now(), data))

    def messages(self) -> tuple[list[P.Message], P.Reassembler]:
        data = b"".join(c for _, c in self.chunks)
        asm, out, pos = P.Reassembler(), [], 0
        while pos < len(data):
            kind, length = P.parse_header(data[pos:pos + P.HEADER.size])
            part = P.decode(data[pos:pos + P.HEADER.size + length])
            pos += P.HEADER.size + length
            msg = asm.feed(part)
            if msg is not None:
                out.append(msg)
        return out, asm


async def _link(trace: Trace, delay: float, scenario):
    clock = StreamClock()
    rx = Receiver(clock)
    port = await rx.start()
    _, writer = await asyncio.open_connection("127.0.0.1", port)

    async def write(data: bytes) -> bool:
        writer.write(data)
        return True

    arrived, dropped = [], []
    link = Uplink(trace, delay, clock, write, arrived.append, dropped.append)
    task = asyncio.create_task(link.run())
    try:
        await scenario(link, clock)
        await asyncio.sleep(0.15)
    finally:
        task.cancel()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)  # the receiver reads the end of stream and returns
        rx.server.close()
    return rx, link, arrived, dropped


def _keyframe(i: int, n: int) -> P.Keyframe:
    return P.Keyframe(index=i, t_capture=0.0, payload=bytes([i % 256]) * n)


def test_uplink_is_paced_to_the_trace_and_delayed():
    trace = Trace(np.array([0.0, 0.5]), np.array([400.0, 800.0]), end_s=1.5)
    delay = 0.05
    sent = [_keyframe(i, 6000) for i in range(8)]  # ~48 KB: 0.5 s at 400 + ~0.23 s at 800 kbps

    async def scenario(link, clock):
        for kf in sent:
            link.send(kf)
        await clock.sleep_until(1.2)

    rx, link, arrived, dropped = asyncio.run(_link(trace, delay, scenario))
    msgs, _ = rx.messages()
    assert msgs == sent and not dropped
    assert [e.msg for e in arrived] == sent
    # the virtual schedule is the simulator's: back-to-back transmissions over the trace
    t = arrived[0].t_start
    for e in arrived:
        t = trace.time_to_send(t, 8 * e.wire_bytes)
        assert math.isclose(e.t_sent, t, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(e.t_arrived, t + delay, abs_tol=1e-9)
    # no byte reaches the receiver before the trace could have carried it (one-sided, robust)
    total = 0
    for t_rx, data in rx.chunks:
        total += len(data)
        assert 8 * total <= trace.cumulative_bits(max(0.0, t_rx - delay)) + 8 * 1500
    # and the link is not much slower than the trace (generous: a loaded 2-core machine)
    last_rx = rx.chunks[-1][0]
    assert last_rx < arrived[-1].t_arrived + 0.3


def test_discard_cuts_the_message_in_transmission_and_keeps_control():
    trace = Trace(np.array([0.0]), np.array([80.0]), end_s=10.0)  # 10 kB/s

    async def scenario(link, clock):
        link.send(_keyframe(1, 20000))  # 2 s of transmission
        link.send(_keyframe(2, 1000))
        link.send(P.Report(second=0, bitrate_kbps=1.0, bandwidth_kbps=2.0), discardable=False)
        await clock.sleep_until(0.3)
        gone = link.discard()
        assert [e.msg.index for e in gone] == [1, 2]
        link.send(_keyframe(3, 500))
        await clock.sleep_until(1.0)

    rx, link, arrived, dropped = asyncio.run(_link(trace, 0.01, scenario))
    msgs, asm = rx.messages()
    assert asm.aborted == 1  # keyframe 1 was cut off mid-way and closed by an abort part
    assert [type(m).__name__ for m in msgs] == ["Report", "Keyframe"]
    assert msgs[1].index == 3
    assert [e.msg.index for e in dropped] == [1, 2]
    received = sum(len(c) for _, c in rx.chunks)
    # what went out of keyframe 1 is what 0.3 s of link carries (not the whole 20 kB)
    assert 2000 < received < 0.3 * 10000 + 3000


def test_idle_link_starts_at_enqueue_time():
    trace = Trace(np.array([0.0]), np.array([1000.0]), end_s=5.0)

    async def scenario(link, clock):
        await clock.sleep_until(0.4)
        link.send(_keyframe(0, 1000))
        await clock.sleep_until(0.6)

    t0 = time.monotonic()
    rx, link, arrived, dropped = asyncio.run(_link(trace, 0.0, scenario))
    assert time.monotonic() - t0 < 5
    (e,) = arrived
    assert 0.4 <= e.t_start < 0.5
    assert math.isclose(e.t_sent, e.t_start + 8 * e.wire_bytes / 1e6, rel_tol=1e-9)
