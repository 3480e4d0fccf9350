"""The emulated network in wall-clock time: the twin of `stac.sim.link` for real sockets.

Uplink (STAC §VII): a FIFO whose bytes leave at the trace's bandwidth. Each message is cut
into `Part`s; a part is released to the socket when its last bit has crossed the link
(`trace.time_to_send`, the same integral the simulator uses) plus the one-way delay. The
schedule is computed in stream time, so late wake-ups of the event loop delay a write but
never let the link run faster than the trace. `discard()` drops every message not fully
sent; one cut off in transmission is closed by an aborting part, so the bytes it used stay
used, as in the simulator. Downlink: a constant delay (plus size / rate if a rate is given).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from stac import protocol
from stac.traces import Trace
from stac.uplink import UplinkSchedule

PART_BYTES = 1400  # payload bytes per part: about one Ethernet MTU


class StreamClock:
    """Seconds since the stream started, on the monotonic wall clock."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def sleep_until(self, t: float) -> None:
        """Sleep until stream time `t` (returns at once if it has passed)."""
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class Entry:
    """One message on the uplink; the link fills in the times (stream seconds)."""

    msg: protocol.Message
    serial: int
    discardable: bool
    meta: Any = None
    t_enqueued: float = math.nan
    t_start: float = math.nan
    t_sent: float = math.nan  # last bit left the sender
    t_arrived: float = math.nan  # last bit reached the receiver (t_sent + delay)
    wire_bytes: int = 0
    dropped: bool = False
    parts_out: int = field(default=0, repr=False)


class Uplink:
    """Paced FIFO from device to edge. `write(data)` puts bytes on the current socket."""

    def __init__(self, trace: Trace, delay_s: float, clock: StreamClock,
                 write: Callable[[bytes], Awaitable[bool]],
                 on_arrival: Callable[[Entry], None] | None = None,
                 on_drop: Callable[[Entry], None] | None = None,
                 part_bytes: int = PART_BYTES) -> None:
        if not (math.isfinite(delay_s) and delay_s >= 0):
            raise ValueError(f"uplink delay must be a finite non-negative time, got {delay_s}")
        self.schedule = UplinkSchedule(trace)
        self.delay_s = float(delay_s)
        self.clock = clock
        self.write = write
        self.on_arrival = on_arrival
        self.on_drop = on_drop
        self.part_bytes = part_bytes
        self.queue: deque[Entry] = deque()
        self.current: Entry | None = None
        # (stream time written, bytes, stream time it was due): achieved rate and lateness
        self.released: list[tuple[float, int, float]] = []
        self._serial = 0
        self._wake = asyncio.Event()
        self._interrupt = asyncio.Event()
        self._pipe: asyncio.Queue[tuple[float, bytes, Entry | None]] = asyncio.Queue()
        self._aborts: deque[int] = deque()

    # -- producer side
    def send(self, msg: protocol.Message, discardable: bool = True, meta: Any = None,
             t: float | None = None) -> Entry:
        """Enqueue `msg` at stream time `t` (default now, never later than now); keyframes
        are discardable, control messages are not."""
        now = self.clock.now()
        entry = Entry(msg=msg, serial=self._serial, discardable=discardable, meta=meta,
                      t_enqueued=now if t is None else min(t, now))
        self._serial = (self._serial + 1) % 2**32
        self.queue.append(entry)
        self._wake.set()
        return entry

    def discard(self, everything: bool = False) -> list[Entry]:
        """Drop discardable messages not fully sent (in transmission and queued), STAC §VII.

        `everything` also drops control messages (the connection is gone)."""
        dropped = [e for e in self.queue if e.discardable or everything]
        self.queue = deque(e for e in self.queue if not (e.discardable or everything))
        cur = self.current
        if cur is not None and (cur.discardable or everything):
            dropped.insert(0, cur)
            self.current = None
            if cur.parts_out and not everything:
                self._aborts.append(cur.serial)
            self._interrupt.set()
        for e in dropped:
            e.dropped = True
            if self.on_drop is not None:
                self.on_drop(e)
        if self._aborts:
            self._wake.set()
        return dropped

    @property
    def backlog(self) -> int:
        """Messages queued or in transmission."""
        return len(self.queue) + (self.current is not None)

    # -- the two tasks: serialiser (pacing) and pipe (propagation delay, socket write)
    async def run(self) -> None:
        """Serve the link until cancelled."""
        pipe = asyncio.create_task(self._run_pipe())
        try:
            await self._run_serialiser()
        finally:
            pipe.cancel()

    async def _transmit(self, frame: bytes, ready: float) -> float | None:
        """Serialise one part once the link is free after `ready`; its finish time, or None
        if interrupted (the link is then free from now)."""
        start, done = self.schedule.transmit(ready, len(frame))
        try:
            if math.isinf(done):
                await self._interrupt.wait()
            else:
                await asyncio.wait_for(self._interrupt.wait(),
                                       max(0.0, done - self.clock.now()))
        except asyncio.TimeoutError:
            return done
        self.schedule.abort(max(start, self.clock.now()))
        return None

    async def _run_serialiser(self) -> None:
        while True:
            if self._aborts:
                serial = self._aborts.popleft()
                frame = protocol.encode(protocol.Part(serial=serial, data=b"", abort=True))
                self._interrupt.clear()
                _, done = self.schedule.transmit(self.clock.now(), len(frame))
                await self.clock.sleep_until(done)
                self._pipe.put_nowait((done + self.delay_s, frame, None))
                continue
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            entry = self.queue.popleft()
            self.current = entry
            self._interrupt.clear()
            t = entry.t_enqueued
            entry.t_start = max(t, self.schedule.free_at)
            parts = protocol.split(entry.msg, entry.serial, self.part_bytes)
            for part in parts:
                frame = protocol.encode(part)
                done = await self._transmit(frame, t)
                if done is None:  # discarded: the link is free from now on
                    break
                t = done
                entry.parts_out += 1
                entry.wire_bytes += len(frame)
                self._pipe.put_nowait((done + self.delay_s, frame, entry if part.last else None))
            else:
                entry.t_sent = t
                entry.t_arrived = t + self.delay_s
                self.current = None

    async def _run_pipe(self) -> None:
        while True:
            deadline, frame, entry = await self._pipe.get()
            await self.clock.sleep_until(deadline)
            if await self.write(frame):
                self.released.append((self.clock.now(), len(frame), deadline))
                if entry is not None and self.on_arrival is not None:
                    self.on_arrival(entry)

    def reset(self) -> list[Entry]:
        """The connection is gone: drop everything queued or in the pipe."""
        dropped = self.discard(everything=True)
        self._aborts.clear()
        while not self._pipe.empty():
            _, _, entry = self._pipe.get_nowait()
            if entry is not None and not entry.dropped:
                entry.dropped = True
                dropped.append(entry)
                if self.on_drop is not None:
                    self.on_drop(entry)
        return dropped


class Downlink:
    """Feedback path: constant one-way delay plus, optionally, size / constant rate (FIFO)."""

    def __init__(self, delay_s: float, kbps: float | None, clock: StreamClock,
                 deliver: Callable[[protocol.Message], Awaitable[None]]) -> None:
        if not (math.isfinite(delay_s) and delay_s >= 0):
            raise ValueError(f"downlink delay must be a finite non-negative time, got {delay_s}")
        if kbps is not None and not (math.isfinite(kbps) and kbps > 0):
            raise ValueError(f"downlink rate must be a positive number of kbps, got {kbps}")
        self.delay_s = float(delay_s)
        self.kbps = kbps
        self.clock = clock
        self.deliver = deliver
        self._free_at = 0.0
        self._pipe: asyncio.Queue[tuple[float, protocol.Message]] = asyncio.Queue()

    def receive(self, msg: protocol.Message, nbytes: int) -> None:
        """A message came off the socket now; it is delivered after the emulated path."""
        start = max(self.clock.now(), self._free_at)
        tx = 8 * nbytes / (self.kbps * 1000.0) if self.kbps else 0.0
        self._free_at = start + tx
        self._pipe.put_nowait((start + tx + self.delay_s, msg))

    async def run(self) -> None:
        while True:
            deadline, msg = await self._pipe.get()
            await self.clock.sleep_until(deadline)
            await self.deliver(msg)
