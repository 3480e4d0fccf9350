"""The simulated network: an uplink that replays a bandwidth trace and a delay-only downlink.

Uplink (STAC §VII): a FIFO served at the trace's bandwidth (`stac.uplink.UplinkSchedule`,
shared with the emulator), then a constant one-way propagation delay.
`discard()` drops every packet not yet fully sent (the one in transmission and the queued
ones): the harness calls it when a new configuration starts (§VII).
Downlink: feedback arrives after a constant delay, plus size / rate if a rate is given.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import simpy

from stac.traces import Trace
from stac.uplink import UplinkSchedule


@dataclass
class Packet:
    """One message on a link; the link fills in the times."""

    payload: Any
    nbytes: int
    t_enqueued: float = math.nan
    t_start: float = math.nan  # transmission of its first bit
    t_sent: float = math.nan  # last bit left the sender
    t_arrived: float = math.nan  # last bit reached the receiver
    dropped: bool = False


class Uplink:
    """FIFO link over a trace with propagation delay; `on_arrival(packet)` at the receiver."""

    def __init__(self, env: simpy.Environment, trace: Trace, delay_s: float,
                 on_arrival: Callable[[Packet], None],
                 on_drop: Callable[[Packet], None] | None = None) -> None:
        if not (math.isfinite(delay_s) and delay_s >= 0):
            raise ValueError(f"uplink delay must be a finite non-negative time, got {delay_s}")
        self.env = env
        self.schedule = UplinkSchedule(trace)
        self.delay_s = float(delay_s)
        self.on_arrival = on_arrival
        self.on_drop = on_drop
        self.queue: deque[Packet] = deque()
        self.current: Packet | None = None
        self._wake = env.event()
        self._server = env.process(self._serve())

    def send(self, packet: Packet) -> None:
        """Enqueue `packet` now."""
        packet.t_enqueued = self.env.now
        self.queue.append(packet)
        if not self._wake.triggered:
            self._wake.succeed()

    def discard(self) -> list[Packet]:
        """Drop every packet not fully sent (in transmission and queued); return them."""
        dropped = list(self.queue)
        self.queue.clear()
        if self.current is not None:
            dropped.insert(0, self.current)
            self.current = None
            self._server.interrupt("discard")
        for p in dropped:
            p.dropped = True
            if self.on_drop is not None:
                self.on_drop(p)
        return dropped

    @property
    def backlog_bytes(self) -> int:
        """Bytes queued or in transmission."""
        return sum(p.nbytes for p in self.queue) + (self.current.nbytes if self.current else 0)

    def _serve(self):
        while True:
            if not self.queue:
                self._wake = self.env.event()
                yield self._wake
                continue
            packet = self.queue.popleft()
            self.current = packet
            packet.t_start, done = self.schedule.transmit(self.env.now, packet.nbytes)
            try:
                if math.isinf(done):  # an all-zero trace never delivers
                    yield self.env.event()
                else:
                    yield self.env.timeout(done - self.env.now)
            except simpy.Interrupt:
                self.schedule.abort(self.env.now)
                continue  # `discard` already marked and reported the packet
            self.current = None
            packet.t_sent = self.env.now
            self.env.process(self._propagate(packet, self.delay_s))

    def _propagate(self, packet: Packet, delay: float):
        yield self.env.timeout(delay)
        packet.t_arrived = self.env.now
        self.on_arrival(packet)


class Downlink:
    """Feedback path: constant one-way delay plus, optionally, size / constant rate (FIFO)."""

    def __init__(self, env: simpy.Environment, delay_s: float, kbps: float | None,
                 on_arrival: Callable[[Packet], None]) -> None:
        if not (math.isfinite(delay_s) and delay_s >= 0):
            raise ValueError(f"downlink delay must be a finite non-negative time, got {delay_s}")
        if kbps is not None and not (math.isfinite(kbps) and kbps > 0):
            raise ValueError(f"downlink rate must be a positive number of kbps, got {kbps}")
        self.env = env
        self.delay_s = float(delay_s)
        self.kbps = kbps
        self.on_arrival = on_arrival
        self._free_at = 0.0  # when the serialiser is next idle (FIFO)

    def send(self, packet: Packet) -> None:
        """Send `packet` now; it arrives after serialisation (if rated) and the delay."""
        packet.t_enqueued = self.env.now
        start = max(self.env.now, self._free_at)
        tx = 8 * packet.nbytes / (self.kbps * 1000.0) if self.kbps else 0.0
        self._free_at = start + tx
        packet.t_start, packet.t_sent = start, start + tx
        self.env.process(self._deliver(packet, start + tx + self.delay_s))

    def _deliver(self, packet: Packet, t: float):
        yield self.env.timeout(t - self.env.now)
        packet.t_arrived = self.env.now
        self.on_arrival(packet)
