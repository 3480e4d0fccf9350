"""The run book: per-frame and per-second bookkeeping of one stream, sans-IO.

Both drivers (`stac.sim` in simulated time, `stac.emu` in wall-clock time) feed it the same
timestamped events: a frame captured, its output shown, a keyframe encoded, delivered or
dropped, a configuration started (discarding what was not fully sent, STAC §VII), a second
ended. It keeps the frame records, the configuration history, the bits put on the uplink
per second and the bandwidth estimate, and hands finished rows to a `RunSink`, so both
drivers emit the same result schema by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from stac.agents import DeviceOutput
from stac.bandwidth import BandwidthEstimator, OracleBandwidth, Waiting
from stac.protocol import Config, Content, Report
from stac.results import FrameRecord, RunSink, SecondRecord
from stac.traces import Trace

__all__ = ["OracleBandwidth", "RunBook", "Totals"]


@dataclass
class Totals:
    """Counts at the end of a stream."""

    frames: int
    keyframes: int
    dropped: int
    delivered: int


class RunBook:
    """Bookkeeping of one stream: feed it events with their times (stream seconds)."""

    def __init__(self, trace: Trace, start: Config, sink: RunSink | None = None,
                 estimator: BandwidthEstimator | None = None) -> None:
        self.trace = trace
        self.sink = sink or RunSink()
        self.estimator = estimator or OracleBandwidth(trace)
        self.config = start
        self.history: list[tuple[float, Config]] = [(0.0, start)]  # (start, config)
        self.epoch = 0  # configurations started so far; keyframes of older ones are stale
        self.records: dict[int, FrameRecord] = {}
        self.bits_sent: dict[int, float] = {}  # second -> bits handed to the uplink
        self.seconds_closed = 0
        self.estimates: dict[int, float] = {}  # second -> kbps estimated for it a second before
        self._shown: set[int] = set()
        self._outstanding: dict[int, None] = {}  # keyframes on the uplink, in hand-over order
        self._link_free = 0.0  # the last delivery's end or discard: the FIFO uplink's next start

    # ------------------------------------------------------------------ frames

    def captured(self, index: int, t: float) -> FrameRecord:
        """Frame `index` was captured at `t`, under the configuration then in force."""
        rec = FrameRecord(frame=index, t_capture=t, knobs=self.config.as_dict())
        self.records[index] = rec
        return rec

    def shown(self, index: int, t: float, out: DeviceOutput, pa: float, miou: float) -> None:
        """The device's output for frame `index` was available at `t`, scored (pa, miou).

        Delay counts from this frame's capture when the result was propagated to it, else
        from the capture of the keyframe whose result is shown (STAC §VIII-C)."""
        rec = self.records[index]
        rec.pa, rec.miou = pa, miou
        if out.segmentation is not None and out.result_index is not None:
            rec.result_age_frames = float(index - out.result_index)
            source = index if out.propagated else out.result_index
            rec.delay_s = t - self.records[source].t_capture
        self._shown.add(index)
        self._settle(rec)

    def encoded(self, index: int, t: float, nbytes: int, epoch: int) -> bool:
        """Frame `index`'s keyframe (`nbytes`) was ready for the uplink at `t`, encoded
        under configuration `epoch`; False (and the frame dropped) if that has ended (§VII)."""
        rec = self.records[index]
        rec.keyframe = True
        rec.bytes = nbytes
        rec.t_sent = t
        second = int(math.floor(t + 1e-9))
        self.bits_sent[second] = self.bits_sent.get(second, 0.0) + 8 * nbytes
        if epoch != self.epoch:
            self.dropped(index)
            return False
        self._outstanding[index] = None
        return True

    def arrived(self, index: int, t: float, t_start: float = math.nan,
                t_end: float = math.nan) -> None:
        """The last bit of frame `index`'s keyframe reached the edge at `t`; its transmission
        ran from `t_start` (first bit on the uplink) to `t_end` (last bit left), which the
        bandwidth estimator learns from (delivered throughput)."""
        rec = self.records[index]
        rec.t_arrived = t
        self._outstanding.pop(index, None)
        if math.isfinite(t_start) and math.isfinite(t_end):
            self.estimator.transmitted(8.0 * rec.bytes, t_start, t_end)
            self._link_free = max(self._link_free, t_end)
        self._settle(rec)

    def dropped(self, index: int) -> None:
        """Frame `index`'s keyframe will never arrive (discarded, or no connection)."""
        rec = self.records[index]
        self._outstanding.pop(index, None)
        if math.isnan(rec.t_arrived):
            rec.dropped = True
            self._settle(rec)

    def _settle(self, rec: FrameRecord) -> None:
        """A row is final once its output was shown and the uplink is done with it."""
        if rec.done or rec.frame not in self._shown:
            return
        if rec.keyframe and not rec.dropped and math.isnan(rec.t_arrived):
            self.sink.frame(rec)  # shown; the uplink still has it
            return
        rec.done = True
        self.sink.frame(rec)

    # ------------------------------------------------------------------ configuration

    def config_started(self, t: float, config: Config) -> None:
        """A new configuration starts at `t`; the driver discards what is not fully sent."""
        self.epoch += 1
        self.config = config
        self.history.append((t, config))
        self._link_free = max(self._link_free, t)

    def config_at(self, t: float) -> Config:
        """The configuration in effect at time `t`."""
        current = self.history[0][1]
        for start, config in self.history:
            if start > t + 1e-9:
                break
            current = config
        return current

    # ------------------------------------------------------------------ seconds

    def close_second(self, second: int, content: Content | None, span: float = 1.0) -> Report:
        """Second `second` ended: its row goes to the sink; returns the per-second report
        for the edge's configuration step (bits sent, estimated bandwidth of the next). The
        row carries the estimate made for this second when the previous one closed."""
        record = SecondRecord.account(second, span, self.bits_sent.get(second, 0.0),
                                      self.trace, self.config_at(second), content)
        record.bandwidth_estimate_kbps = self.estimates.get(second, math.nan)
        self.sink.second(record)
        self.seconds_closed = second + 1
        estimate = self.estimator.estimate(second, self.waiting())
        self.estimates[second + 1] = estimate
        return Report(second=second, bitrate_kbps=self.bits_sent.get(second, 0.0) / 1000.0,
                      bandwidth_kbps=estimate)

    def waiting(self) -> Waiting | None:
        """The oldest keyframe on the uplink not yet known to be delivered, and when its
        transmission started: the later of its hand-over and the last delivery or discard
        (the uplink is FIFO); None when nothing is outstanding."""
        if not self._outstanding:
            return None
        rec = self.records[next(iter(self._outstanding))]
        return Waiting(8.0 * rec.bytes, max(rec.t_sent, self._link_free))

    def finish(self, video_s: float, content: Callable[[int], Content | None]) -> Totals:
        """The stream ended after `video_s` seconds of video: close the seconds still open
        (the last one partial), finalise every row, and count."""
        for second in range(self.seconds_closed, math.ceil(video_s - 1e-9)):
            self.close_second(second, content(second), span=min(1.0, video_s - second))
        recs = [self.records[i] for i in sorted(self.records)]
        for rec in recs:
            if not rec.done:  # still queued or in flight when the video ended
                rec.done = True
                self.sink.frame(rec)
        return Totals(frames=len(recs), keyframes=sum(r.keyframe for r in recs),
                      dropped=sum(r.dropped for r in recs),
                      delivered=sum(not math.isnan(r.t_arrived) for r in recs))
