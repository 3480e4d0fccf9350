"""The SimPy driver: camera, device, uplink, edge, downlink and the per-second configuration step.

It only moves messages between the sans-IO agents of a scheme and advances simulated time:
each agent call lasts what the latency profile says (Table II records, or the call's wall
time under `measured`). The device and the edge are single servers (SimPy Resources), so
their calls run one at a time in arrival order. Once per second the edge may return a new
configuration; when one starts, every keyframe not fully sent is discarded (STAC §VII).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import simpy

from stac.agents import Work
from stac.bandwidth import BandwidthEstimator
from stac.frames import Frame
from stac.latency import LatencyProfile
from stac.protocol import Config, Feedback, Keyframe
from stac.results import FrameRecord, RunSink
from stac.runbook import RunBook
from stac.schemes import Scheme
from stac.sim.link import Downlink, Packet, Uplink
from stac.traces import Trace


@dataclass(frozen=True)
class LinkConfig:
    """Network parameters beyond the trace: one-way delays and the feedback rate."""

    delay_s: float = 0.02  # uplink one-way propagation delay
    downlink_delay_s: float | None = None  # None: same as delay_s
    downlink_kbps: float | None = None  # None: feedback size does not add time


@dataclass
class SimResult:
    """Totals of one simulated run."""

    frames: int
    keyframes: int
    dropped: int
    delivered: int
    feedbacks: int
    sim_time_s: float
    video_s: float
    records: list[FrameRecord] = field(repr=False, default_factory=list)


Evaluate = Callable[[Frame, "np.ndarray | None"], tuple[float, float]]


class Simulation:
    """One run of a scheme on a frame source over a trace, in simulated time."""

    def __init__(self, scheme: Scheme, trace: Trace, profile: LatencyProfile,
                 evaluate: Evaluate, sink: RunSink | None = None,
                 link: LinkConfig | None = None,
                 progress: Callable[[int], None] | None = None,
                 estimator: BandwidthEstimator | None = None) -> None:
        self.scheme = scheme
        self.trace = trace
        self.profile = profile
        self.evaluate = evaluate
        self.link = link or LinkConfig()
        self.progress = progress
        self.book = RunBook(trace, scheme.config, sink, estimator)
        self.env = simpy.Environment()
        self.device_cpu = simpy.Resource(self.env, capacity=1)
        self.edge_cpu = simpy.Resource(self.env, capacity=1)
        self.uplink = Uplink(self.env, trace, self.link.delay_s, self._on_uplink_arrival,
                             self._on_uplink_drop)
        down_delay = self.link.delay_s if self.link.downlink_delay_s is None \
            else self.link.downlink_delay_s
        self.downlink = Downlink(self.env, down_delay, self.link.downlink_kbps,
                                 self._on_downlink_arrival)
        self.feedbacks = 0
        self._captured = 0
        self._last_capture = 0.0
        self._processed = 0
        self._camera_done = False
        self._all_done = self.env.event()

    # ------------------------------------------------------------------ agent calls

    def _timed(self, call: Callable[[], object], work_of: Callable[[object], list[Work]]):
        """Run an agent call; return (its result, its simulated duration)."""
        t0 = time.perf_counter()
        out = call()
        wall = time.perf_counter() - t0
        return out, self.profile.call_duration(work_of(out), wall)

    # ------------------------------------------------------------------ processes

    def _camera(self, frames: Iterable[Frame], duration: float | None):
        for frame in frames:
            if duration is not None and frame.t >= duration - 1e-9:
                break
            if frame.t > self.env.now:
                yield self.env.timeout(frame.t - self.env.now)
            self.book.captured(frame.index, frame.t)
            self._captured += 1
            self._last_capture = frame.t
            self.env.process(self._device_frame(frame))
        self._camera_done = True
        self._check_done()

    def _device_frame(self, frame: Frame):
        with self.device_cpu.request() as req:
            yield req
            epoch = self.book.epoch
            out, dur = self._timed(
                lambda: self.scheme.device.on_frame(frame.index, frame.t, frame.rgb),
                lambda o: o.work)
            yield self.env.timeout(dur)
        if out.keyframe is not None:
            nbytes = len(out.keyframe.payload)
            if self.book.encoded(frame.index, self.env.now, nbytes, epoch):
                self.uplink.send(Packet(payload=out.keyframe, nbytes=nbytes))
        pa, miou = self.evaluate(frame, out.segmentation)
        self.book.shown(frame.index, self.env.now, out, pa, miou)
        self._processed += 1
        if self.progress is not None:
            self.progress(1)
        self._check_done()

    def _on_uplink_drop(self, packet: Packet) -> None:
        self.book.dropped(packet.payload.index)

    def _on_uplink_arrival(self, packet: Packet) -> None:
        self.book.arrived(packet.payload.index, packet.t_arrived, packet.t_start, packet.t_sent)
        self.env.process(self._edge_keyframe(packet.payload))

    def _edge_keyframe(self, keyframe: Keyframe):
        with self.edge_cpu.request() as req:
            yield req
            out, dur = self._timed(lambda: self.scheme.edge.on_keyframe(keyframe),
                                   lambda o: o.work)
            yield self.env.timeout(dur)
        fb = out.feedback
        self.downlink.send(Packet(payload=fb, nbytes=len(fb.segmentation) + len(fb.levels)))

    def _on_downlink_arrival(self, packet: Packet) -> None:
        self.env.process(self._device_feedback(packet.payload))

    def _device_feedback(self, feedback: Feedback):
        with self.device_cpu.request() as req:
            yield req
            _, dur = self._timed(lambda: self.scheme.device.on_feedback(feedback), lambda w: w)
            yield self.env.timeout(dur)
        self.feedbacks += 1

    def _config_step(self):
        """Once per second (STAC §VI): content -> edge tuner -> maybe a new configuration."""
        second = 0
        while True:
            yield self.env.timeout(second + 1 - self.env.now)
            if self._camera_done and second >= self._last_capture + 1e-9:
                return  # past the video: the device is still catching up
            content = self.scheme.device.content(second)
            report = self.book.close_second(second, content)
            config = self.scheme.edge.on_second(second, report.bitrate_kbps,
                                                report.bandwidth_kbps, content)
            second += 1
            if config is not None:
                if config.t_effective > self.env.now:
                    self.env.process(self._apply_later(config))
                else:
                    self._apply(config)

    def _apply_later(self, config: Config):
        yield self.env.timeout(config.t_effective - self.env.now)
        self._apply(config)

    def _apply(self, config: Config) -> None:
        """A new configuration starts: discard what is not fully sent (§VII), then adopt it."""
        self.book.config_started(self.env.now, config)
        self.uplink.discard()
        self.scheme.device.on_config(config)

    def _check_done(self) -> None:
        if self._camera_done and self._processed == self._captured \
                and not self._all_done.triggered:
            self._all_done.succeed()

    # ------------------------------------------------------------------ run

    def run(self, frames: Iterable[Frame], duration: float | None = None) -> SimResult:
        """Simulate until every captured frame has been shown; returns the totals."""
        self.env.process(self._camera(frames, duration))
        self.env.process(self._config_step())
        self.env.run(until=self._all_done)
        return self._finish(getattr(frames, "fps", None))

    def _finish(self, fps: float | None) -> SimResult:
        recs = [self.book.records[i] for i in sorted(self.book.records)]
        if fps is None and len(recs) > 1:
            fps = 1.0 / (recs[1].t_capture - recs[0].t_capture)
        video_s = recs[-1].t_capture + 1.0 / (fps or 1.0) if recs else 0.0
        totals = self.book.finish(video_s, self.scheme.device.content)
        return SimResult(
            frames=totals.frames, keyframes=totals.keyframes, dropped=totals.dropped,
            delivered=totals.delivered, feedbacks=self.feedbacks,
            sim_time_s=float(self.env.now), video_s=video_s, records=recs)
