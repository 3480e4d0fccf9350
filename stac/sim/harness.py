"""The SimPy driver: camera, device, uplink, edge, downlink and the per-second configuration step.

It only moves messages between the sans-IO agents of a scheme and advances simulated time:
each agent call lasts what the latency profile says (Table II records, or the call's wall
time under `measured`). The device and the edge are single servers (SimPy Resources), so
their calls run one at a time in arrival order. Once per second the edge may return a new
configuration; when one starts, every keyframe not fully sent is discarded (STAC §VII).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import simpy

from stac.agents import DeviceOutput, Work
from stac.frames import Frame
from stac.latency import LatencyProfile
from stac.protocol import Config, Content, Feedback, Keyframe
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
class FrameRecord:
    """One row of frames.csv; keyframe fields are filled in when the uplink is done with it."""

    frame: int
    t_capture: float
    keyframe: bool = False
    bytes: int = 0
    t_sent: float = math.nan  # keyframe handed to the uplink (after the device's encode)
    t_arrived: float = math.nan  # last bit at the edge (transmission + propagation)
    dropped: bool = False
    delay_s: float = math.nan  # capture of the frame the shown result describes -> result shown
    result_age_frames: float = math.nan  # frame - index of the keyframe whose result is shown
    pa: float = math.nan
    miou: float = math.nan
    B: float = math.nan
    fps: float = math.nan
    done: bool = False  # no field will change any more


@dataclass
class SecondRecord:
    """One row of seconds.csv, minus the accuracy means the writer adds from the frames."""

    second: int
    span_s: float  # length of this second within the run (< 1 for the last one)
    bitrate_kbps: float
    bandwidth_kbps: float
    B: float
    fps: float
    c: float = math.nan
    d: float = math.nan

    @classmethod
    def account(cls, second: int, span: float, bits_sent: float, trace: Trace,
                config: Config, content: Content | None) -> SecondRecord:
        """The row of one second: bits sent against the trace's capacity over
        [second, second + span), the configuration then in force and the content metrics."""
        return cls(second=second, span_s=span, bitrate_kbps=bits_sent / 1000.0 / span,
                   bandwidth_kbps=float(trace.bits_between(second, second + span)) / 1000.0 / span,
                   B=config.B, fps=config.fps,
                   c=content.c if content is not None else math.nan,
                   d=content.d if content is not None else math.nan)


class RunSink:
    """Receives records as the simulation produces them (see `stac.results.RunWriter`)."""

    def frame(self, record: FrameRecord) -> None:
        """A frame's record was created or changed; `record.done` says it is final."""

    def second(self, record: SecondRecord) -> None:
        """A second ended."""


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
                 progress: Callable[[int], None] | None = None) -> None:
        self.scheme = scheme
        self.trace = trace
        self.profile = profile
        self.evaluate = evaluate
        self.sink = sink or RunSink()
        self.link = link or LinkConfig()
        self.progress = progress
        self.env = simpy.Environment()
        self.device_cpu = simpy.Resource(self.env, capacity=1)
        self.edge_cpu = simpy.Resource(self.env, capacity=1)
        self.uplink = Uplink(self.env, trace, self.link.delay_s, self._on_uplink_arrival,
                             self._on_uplink_drop)
        down_delay = self.link.delay_s if self.link.downlink_delay_s is None \
            else self.link.downlink_delay_s
        self.downlink = Downlink(self.env, down_delay, self.link.downlink_kbps,
                                 self._on_downlink_arrival)
        self.config = scheme.config
        self.epoch = 0  # configurations started so far; keyframes from older ones are stale
        self.records: dict[int, FrameRecord] = {}
        self.bits_sent: dict[int, float] = {}  # second -> bits handed to the uplink
        self.feedbacks = 0
        self._captured = 0
        self._last_capture = 0.0
        self._processed = 0
        self._camera_done = False
        self._all_done = self.env.event()
        self._seconds_emitted = 0
        self.history: list[tuple[float, Config]] = [(0.0, scheme.config)]  # (start, config)

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
            rec = FrameRecord(frame=frame.index, t_capture=frame.t, B=self.config.B,
                              fps=self.config.fps)
            self.records[frame.index] = rec
            self._captured += 1
            self._last_capture = frame.t
            self.env.process(self._device_frame(frame, rec))
        self._camera_done = True
        self._check_done()

    def _device_frame(self, frame: Frame, rec: FrameRecord):
        with self.device_cpu.request() as req:
            yield req
            epoch = self.epoch
            out, dur = self._timed(
                lambda: self.scheme.device.on_frame(frame.index, frame.t, frame.rgb),
                lambda o: o.work)
            yield self.env.timeout(dur)
        self._shown(frame, rec, out)
        if out.keyframe is not None:
            rec.keyframe = True
            rec.bytes = len(out.keyframe.payload)
            rec.t_sent = self.env.now
            second = int(math.floor(self.env.now + 1e-9))
            self.bits_sent[second] = self.bits_sent.get(second, 0.0) + 8 * rec.bytes
            packet = Packet(payload=out.keyframe, nbytes=rec.bytes)
            if epoch != self.epoch:  # encoded under a configuration that has ended (§VII)
                packet.dropped = True
                self._on_uplink_drop(packet)
            else:
                self.uplink.send(packet)
        else:
            rec.done = True
        self.sink.frame(rec)
        self._processed += 1
        if self.progress is not None:
            self.progress(1)
        self._check_done()

    def _shown(self, frame: Frame, rec: FrameRecord, out: DeviceOutput) -> None:
        rec.pa, rec.miou = self.evaluate(frame, out.segmentation)
        if out.segmentation is None or out.result_index is None:
            return
        rec.result_age_frames = float(frame.index - out.result_index)
        source = frame.index if out.propagated else out.result_index
        rec.delay_s = self.env.now - self.records[source].t_capture

    def _on_uplink_drop(self, packet: Packet) -> None:
        rec = self.records[packet.payload.index]
        rec.dropped = True
        rec.done = True
        self.sink.frame(rec)

    def _on_uplink_arrival(self, packet: Packet) -> None:
        rec = self.records[packet.payload.index]
        rec.t_arrived = packet.t_arrived
        rec.done = True
        self.sink.frame(rec)
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
            self._emit_second(second, 1.0, content)
            bitrate = self.bits_sent.get(second, 0.0) / 1000.0
            # the estimated bandwidth for the next second is the trace's real one (§VIII-C)
            bandwidth_next = float(self.trace.bits_between(second + 1, second + 2)) / 1000.0
            config = self.scheme.edge.on_second(second, bitrate, bandwidth_next, content)
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
        self.epoch += 1
        self.uplink.discard()
        self.scheme.device.on_config(config)
        self.config = config
        self.history.append((self.env.now, config))

    def _config_at(self, t: float) -> Config:
        """The configuration in effect at time `t`."""
        current = self.history[0][1]
        for start, config in self.history:
            if start > t + 1e-9:
                break
            current = config
        return current

    def _emit_second(self, second: int, span: float, content: Content | None) -> None:
        self.sink.second(SecondRecord.account(second, span, self.bits_sent.get(second, 0.0),
                                              self.trace, self._config_at(second), content))
        self._seconds_emitted = second + 1

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
        recs = [self.records[i] for i in sorted(self.records)]
        if fps is None and len(recs) > 1:
            fps = 1.0 / (recs[1].t_capture - recs[0].t_capture)
        video_s = recs[-1].t_capture + 1.0 / (fps or 1.0) if recs else 0.0
        # seconds not yet closed by the configuration step (the run's last, partial one)
        for second in range(self._seconds_emitted, math.ceil(video_s - 1e-9)):
            self._emit_second(second, min(1.0, video_s - second),
                              self.scheme.device.content(second))
        for rec in recs:
            if not rec.done:  # still queued or in flight when the video ended
                rec.done = True
                self.sink.frame(rec)
        return SimResult(
            frames=len(recs), keyframes=sum(r.keyframe for r in recs),
            dropped=sum(r.dropped for r in recs),
            delivered=sum(not math.isnan(r.t_arrived) for r in recs),
            feedbacks=self.feedbacks, sim_time_s=float(self.env.now), video_s=video_s,
            records=recs)
