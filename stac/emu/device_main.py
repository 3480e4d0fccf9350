"""`stac-device stream`: the device as a real process streaming to an edge over TCP.

The camera clock runs in wall time (frame n is captured at stream time n / fps); the
scheme's DeviceAgent runs on one device thread (its calls one at a time, as the simulator's
device resource); keyframes go out on an uplink paced to the bandwidth trace plus a one-way
delay (`stac.emu.link`), and what is not fully sent when a new configuration starts is
discarded (STAC §VII). While the edge is unreachable the device keeps showing its
propagated / last results, reconnects with exponential backoff and records the outage.
Outputs are the simulator's (`stac.results.RunWriter`), written row by row.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.models.registry import ModelError
from stac import protocol
from stac.bandwidth import BandwidthEstimator
from stac.emu import streams
from stac.emu.auth import read_token
from stac.emu.build import _video_seconds, build_stream, set_threads
from stac.emu.link import Downlink, Entry, StreamClock, Uplink
from stac.frames import Frame, FrameError
from stac.options import add_stream_arguments, run_options
from stac.protocol import Config, ErrorCode
from stac.results import FrameRecord, RunSink
from stac.runbook import RunBook
from stac.session import Role, Session
from stac.sim.runner import RunOptions
from stac.traces import Trace, TraceError

log = logging.getLogger("stac.device")


class EdgeRefused(RuntimeError):
    """The edge refused this device for good (wrong token, unknown scheme, bad config)."""


FATAL = {ErrorCode.UNAUTHORIZED, ErrorCode.UNKNOWN_SCHEME, ErrorCode.MALFORMED,
         ErrorCode.BAD_VERSION}


@dataclass(frozen=True)
class LinkOptions:
    """The emulated network beyond the trace (same meaning as `stac.sim.harness.LinkConfig`)."""

    delay_s: float = 0.02
    downlink_delay_s: float | None = None
    downlink_kbps: float | None = None


@dataclass(frozen=True)
class Outage:
    """An interval (stream seconds) without a working connection to the edge."""

    start_s: float
    end_s: float
    reason: str


@dataclass
class DeviceResult:
    """Totals of one emulated stream."""

    frames: int
    keyframes: int
    dropped: int
    delivered: int
    feedbacks: int
    outages: list[Outage]
    wall_s: float
    released: list[tuple[float, int, float]] = field(repr=False, default_factory=list)
    records: list[FrameRecord] = field(repr=False, default_factory=list)


class DeviceClient:
    """One device stream: camera, agent, paced uplink, connection to the edge."""

    def __init__(self, agent, start: Config, scheme: str, hello: dict[str, Any],
                 edge: tuple[str, int], trace: Trace, evaluate, sink: RunSink,
                 link: LinkOptions | None = None, device_id: str = "device-0", token: str = "",
                 backoff: tuple[float, float] = (0.1, 2.0),
                 feedback_timeout: float | None = 3.0,
                 estimator: BandwidthEstimator | None = None) -> None:
        self.agent = agent
        self.book = RunBook(trace, start, sink, estimator)
        self.scheme = scheme
        self.hello = hello
        self.edge = edge
        self.trace = trace
        self.evaluate = evaluate
        self.link = link or LinkOptions()
        self.device_id = device_id
        self.token = token
        self.backoff = backoff
        self.outages: list[Outage] = []
        self.feedbacks = 0
        self.refused: str | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._down_since: float | None = None
        self._down_reason = "not connected"
        self._camera_started = False
        self._sessions = 0
        self._later: set[asyncio.Task] = set()  # configurations waiting for t_effective
        self._device = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")
        self._books = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evaluate")
        # silent-edge watchdog: keyframes delivered and not yet answered (index -> arrival)
        self.feedback_timeout = feedback_timeout
        self._awaiting: dict[int, float] = {}
        self._last_heard = 0.0
        self._silent = False
        self._session: Session | None = None

    # ------------------------------------------------------------------ helpers

    async def _on_device(self, fn):
        """Run an agent call on the device thread (one call at a time, FIFO)."""
        return await asyncio.get_running_loop().run_in_executor(self._device, fn)

    async def _write(self, data: bytes) -> bool:
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        writer.write(data)
        return True

    def _send_now(self, msg: protocol.Message) -> None:
        """Control messages of the configuration step go straight out (as in the simulator,
        where the step is instantaneous); keyframes go through the paced uplink."""
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(protocol.encode(msg))

    # ------------------------------------------------------------------ connection

    async def _connect_once(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.edge), 5.0)
        session = Session(Role.DEVICE)
        try:
            hello = protocol.Hello(device_id=self.device_id, scheme=self.scheme,
                                   config=self.hello, token=self.token)
            session.send(hello)
            await streams.write_message(writer, hello)
            answer = await streams.read_message(reader, timeout=5.0, idle_timeout=30.0)
            if answer is not None:
                session.receive(answer)
        except BaseException:
            writer.close()
            raise
        if isinstance(answer, protocol.Error):
            writer.close()
            code = ErrorCode(answer.code) if answer.code in ErrorCode._value2member_map_ else None
            if code in FATAL:
                raise EdgeRefused(f"edge refused the device: {code.name}: {answer.text}")
            raise ConnectionError(f"edge answered ERROR {answer.code}: {answer.text}")
        if not isinstance(answer, protocol.Hello):
            writer.close()
            raise ConnectionError(f"edge answered {type(answer).__name__} instead of HELLO")
        self._session = session
        return reader, writer

    def _mark_down(self, reason: str, since: float | None = None) -> None:
        """The edge is unreachable from `since` (default now); the outage keeps its first
        reason (its cause), not the errors of the retries that follow."""
        if self._down_since is None:
            self._down_since = self.clock.now() if since is None else since
            self._down_reason = reason

    def _mark_up(self) -> None:
        if self._down_since is not None and self._camera_started:
            now = self.clock.now()
            self.outages.append(Outage(max(0.0, self._down_since), now, self._down_reason))
            log.warning("edge reachable again after %.2f s", now - self._down_since)
        self._down_since = None

    async def _connection(self, connected: asyncio.Event, finished: asyncio.Event) -> None:
        """Keep a connection to the edge; record every interval without one."""
        delay = self.backoff[0]
        while not finished.is_set():
            try:
                reader, writer = await self._connect_once()
            except EdgeRefused as exc:
                self.refused = str(exc)
                log.error("%s", exc)
                connected.set()  # release the camera wait; the run ends without an edge
                return
            except (OSError, asyncio.TimeoutError, protocol.ProtocolError) as exc:
                self._mark_down(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            if self._sessions:  # a fresh edge agent: restart the stream under the current
                # configuration (a new x264 stream starts with an IDR frame, say)
                config = self.book.config
                self.book.config_started(self.clock.now(), config)
                await self._on_device(lambda c=config: self.agent.on_config(c))
            self._sessions += 1
            self._mark_up()
            delay = self.backoff[0]
            self._writer = writer
            connected.set()
            reason = await self._receive(reader)
            self._writer = None
            writer.close()
            self._awaiting.clear()
            for entry in self.uplink.reset():
                log.debug("keyframe %s lost with the connection", entry.meta)
            if not finished.is_set():
                self._mark_down(reason)
                log.warning("connection to the edge lost (%s); reconnecting", reason)

    async def _receive(self, reader: asyncio.StreamReader) -> str:
        """Read the edge's messages into the downlink until the connection ends."""
        try:
            while True:
                msg = await streams.read_message(reader, timeout=5.0)
                if msg is None:
                    return "edge closed the connection"
                self._heard_from_edge(msg)
                if isinstance(msg, (protocol.Feedback, protocol.Config)):
                    self.downlink.receive(msg, len(protocol.encode(msg)))
                elif isinstance(msg, protocol.Error):
                    return f"edge sent ERROR {msg.code}: {msg.text}"
                elif isinstance(msg, protocol.Bye):
                    return f"edge said bye ({msg.reason})"
                else:
                    return f"unexpected {type(msg).__name__} from the edge"
        except (OSError, protocol.ProtocolError, asyncio.IncompleteReadError) as exc:
            return f"{type(exc).__name__}: {exc}"

    # ------------------------------------------------------------------ silent edge

    def _heard_from_edge(self, msg: protocol.Message) -> None:
        """A message from the edge: it is alive; a feedback answers its keyframe. Raises
        ProtocolError for a message the session rules do not allow."""
        if self._session is not None:
            self._session.receive(msg)
        self._last_heard = self.clock.now()
        if isinstance(msg, protocol.Feedback):
            self._awaiting.pop(msg.index, None)
        if self._silent:
            self._silent = False
            self._mark_up()

    def _silent_since(self, now: float) -> float | None:
        """When the edge went silent, if it has said nothing for `feedback_timeout` seconds
        while keyframes it received are unanswered; else None."""
        if not self._awaiting or self.feedback_timeout is None:
            return None
        since = max(self._last_heard, min(self._awaiting.values()))
        return since if now - since > self.feedback_timeout else None

    async def _watch_edge(self) -> None:
        """Detect a silent edge (frozen, overloaded, a dead link that TCP has not noticed)
        and record it as an outage with that cause until the edge speaks again."""
        period = min(0.25, self.feedback_timeout or 0.25)
        while True:
            await asyncio.sleep(period)
            now = self.clock.now()
            since = self._silent_since(now)
            if since is not None and not self._silent and self._down_since is None:
                self._silent = True
                self._mark_down(f"edge silent: no message for {self.feedback_timeout:g} s "
                                f"with {len(self._awaiting)} keyframes unanswered", since)
                log.warning("edge silent for %.2f s with %d keyframes unanswered",
                            now - since, len(self._awaiting))

    # ------------------------------------------------------------------ downlink, config

    async def _deliver(self, msg: protocol.Message) -> None:
        if isinstance(msg, protocol.Feedback):
            await self._on_device(lambda: self.agent.on_feedback(msg))
            self.feedbacks += 1
        elif isinstance(msg, protocol.Config):
            if msg.t_effective > self.clock.now():  # later: do not hold up the feedback
                task = asyncio.create_task(self._apply_at(msg))
                self._later.add(task)
                task.add_done_callback(self._later.discard)
            else:
                await self._apply(msg)

    async def _apply_at(self, config: Config) -> None:
        await self.clock.sleep_until(config.t_effective)
        await self._apply(config)

    async def _apply(self, config: Config) -> None:
        """A new configuration starts: discard what is not fully sent (§VII), then adopt it."""
        self.book.config_started(self.clock.now(), config)
        self.uplink.discard()
        await self._on_device(lambda: self.agent.on_config(config))

    # ------------------------------------------------------------------ uplink callbacks

    def _on_arrival(self, entry: Entry) -> None:
        if entry.meta is not None:
            self.book.arrived(entry.meta, entry.t_arrived, entry.t_start, entry.t_sent)
            self._awaiting[entry.meta] = entry.t_arrived

    def _on_drop(self, entry: Entry) -> None:
        if entry.meta is not None:
            self.book.dropped(entry.meta)

    # ------------------------------------------------------------------ camera, seconds

    async def _frame(self, frame: Frame) -> None:
        self.book.captured(frame.index, frame.t)
        epoch = self.book.epoch
        out = await self._on_device(
            lambda: self.agent.on_frame(frame.index, frame.t, frame.rgb))
        now = self.clock.now()
        if out.keyframe is not None:  # onto the uplink first: scoring is not device time
            if self.book.encoded(frame.index, now, len(out.keyframe.payload), epoch):
                if self._writer is None:  # no edge to send to
                    self.book.dropped(frame.index)
                else:
                    self.uplink.send(out.keyframe, meta=frame.index, t=now)
        pa, miou = await asyncio.get_running_loop().run_in_executor(
            self._books, self.evaluate, frame, out.segmentation)
        self.book.shown(frame.index, now, out, pa, miou)

    async def _camera(self, frames: list[Frame]) -> None:
        for frame in frames:
            await self.clock.sleep_until(frame.t)
            await self._frame(frame)

    async def _seconds(self, video_s: float) -> None:
        """Once per second (STAC §VI): content and uplink account to the edge's tuner."""
        second = 0
        while second + 1 <= video_s + 1e-9:
            await self.clock.sleep_until(second + 1)
            content = await self._on_device(lambda s=second: self.agent.content(s))
            report = self.book.close_second(second, content)
            if content is not None:
                self._send_now(content)
            self._send_now(report)
            second += 1

    # ------------------------------------------------------------------ run

    async def run(self, frames: list[Frame], connect_timeout: float = 10.0,
                  before_start: Callable[[], Awaitable[None]] | None = None) -> DeviceResult:
        """Stream `frames` in wall time; returns when every frame has been shown.

        `before_start` is awaited once connected, just before the camera starts (a start
        signal shared by several devices)."""
        self.clock = StreamClock()
        self.uplink = Uplink(self.trace, self.link.delay_s, self.clock, self._write,
                             self._on_arrival, self._on_drop)
        down_delay = self.link.delay_s if self.link.downlink_delay_s is None \
            else self.link.downlink_delay_s
        self.downlink = Downlink(down_delay, self.link.downlink_kbps, self.clock, self._deliver)
        connected, finished = asyncio.Event(), asyncio.Event()
        conn = asyncio.create_task(self._connection(connected, finished))
        try:
            await asyncio.wait_for(connected.wait(), connect_timeout)
        except asyncio.TimeoutError:
            log.warning("edge %s:%s not reachable; streaming without it", *self.edge)
        if self.refused:
            await asyncio.gather(conn, return_exceptions=True)
            raise EdgeRefused(self.refused)
        if before_start is not None:
            await before_start()
        wall0 = time.monotonic()
        self.clock.t0 = wall0  # the camera starts now: stream time 0
        self._camera_started = True
        if self._down_since is not None:
            self._down_since = 0.0
        video_s = _video_seconds(frames)
        tasks = [asyncio.create_task(t) for t in (self.uplink.run(), self.downlink.run(),
                                                  self._watch_edge())]
        seconds = asyncio.create_task(self._seconds(video_s))
        try:
            await self._camera(frames)
            await self.clock.sleep_until(video_s)
        finally:
            finished.set()
            seconds.cancel()
            await asyncio.gather(seconds, return_exceptions=True)
            contents = {s: await self._on_device(lambda s=s: self.agent.content(s))
                        for s in range(self.book.seconds_closed, math.ceil(video_s - 1e-9))}
            if self._down_since is not None:  # still without an edge at the end
                self.outages.append(Outage(self._down_since, self.clock.now(),
                                           self._down_reason))
            writer = self._writer
            if writer is not None:
                self._send_now(protocol.Bye(reason="stream ended"))
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except (OSError, asyncio.TimeoutError):
                    pass
                writer.close()
            conn.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(conn, *tasks, return_exceptions=True)
            totals = self.book.finish(video_s, contents.get)
            self._device.shutdown(wait=True)
            self._books.shutdown(wait=True)
        recs = [self.book.records[i] for i in sorted(self.book.records)]
        return DeviceResult(
            frames=totals.frames, keyframes=totals.keyframes, dropped=totals.dropped,
            delivered=totals.delivered, feedbacks=self.feedbacks, outages=list(self.outages),
            wall_s=time.monotonic() - wall0, released=list(self.uplink.released), records=recs)


def parse_edge(text: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stac-device", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("stream", help="stream a video to an edge over a trace-paced uplink")
    p.add_argument("--edge", required=True, type=parse_edge, help="edge address HOST:PORT")
    p.add_argument("--out", required=True, type=Path, help="output folder (simulator schema)")
    add_stream_arguments(p)
    p.add_argument("--device-id", default="device-0")
    p.add_argument("--token-file", type=Path, default=None,
                   help="file whose first line is the edge's secret (default: $STAC_TOKEN)")
    p.add_argument("--token", default=None,
                   help="the edge's secret on the command line (visible to local users: "
                        "prefer --token-file or $STAC_TOKEN)")
    p.add_argument("--feedback-timeout", type=float, default=3.0,
                   help="seconds without a message from the edge, while keyframes are "
                        "unanswered, after which the edge counts as down (0: never)")
    p.add_argument("--wait-go", action="store_true",
                   help="once connected, print 'ready' and start on a 'go' line on stdin")
    p.add_argument("--log-level", default="INFO")
    return parser


def stream(options: RunOptions, edge: tuple[str, int], device_id: str = "device-0",
           token: str = "", wait_go: bool = False,
           feedback_timeout: float | None = 3.0) -> dict[str, Any]:
    """Run one device stream; writes the simulator's outputs into `options.out` (row by row)
    plus outages.csv, and returns the summary."""
    from stac.results import RunWriter, plot_timeline, write_summary

    setup = build_stream(options)
    out = Path(options.out)
    writer = RunWriter(out, setup.start.as_dict())
    link = LinkOptions(delay_s=options.delay_ms / 1000.0,
                       downlink_delay_s=None if options.downlink_delay_ms is None
                       else options.downlink_delay_ms / 1000.0,
                       downlink_kbps=options.downlink_kbps)
    client = DeviceClient(setup.agent, setup.start, options.scheme.name, setup.hello, edge,
                          setup.trace, setup.evaluate, writer, link=link, device_id=device_id,
                          token=token, feedback_timeout=feedback_timeout,
                          estimator=setup.estimator)
    async def go() -> None:  # `stac-sim emulate` starts every device's camera at once
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            raise SystemExit(f"stac-device: expected 'go' on stdin, got {line!r}")

    try:
        result = asyncio.run(client.run(setup.frames, before_start=go if wait_go else None))
    finally:
        writer.close()
        _write_outages(out, client.outages)
    meta = dict(setup.meta)
    meta.update({"driver": "emulator", "device_id": device_id, "edge": f"{edge[0]}:{edge[1]}",
                 "wall_s": result.wall_s, "feedbacks": result.feedbacks,
                 "outages": [vars(o) for o in result.outages],
                 "outage_s": sum(o.end_s - o.start_s for o in result.outages),
                 "uplink_released": _released_stats(result.released, setup.trace,
                                                    link.delay_s)})
    summary = write_summary(out, meta)
    plot_timeline(out, title=f"{options.scheme.name} (emulated) on {setup.trace.name}")
    return summary


def _released_stats(released: list[tuple[float, int, float]], trace: Trace,
                    delay_s: float) -> dict[str, Any]:
    """What the uplink put on the socket: the largest 1 s window of bytes against the trace's
    capacity over the same window shifted back by the propagation delay, and how late the
    writes were against their schedule (a late write lets a window catch up)."""
    if not released:
        return {"bytes": 0, "max_window_ratio": None, "late_p99_s": None, "late_max_s": None}
    t = np.array([r[0] for r in released])
    b = np.cumsum([r[1] for r in released])
    late = t - np.array([r[2] for r in released])
    ratios = []
    for i, start in enumerate(t):  # windows [start, start + 1) opening at each write
        j = int(np.searchsorted(t, start + 1.0, side="left")) - 1
        sent = 8 * (b[j] - (b[i - 1] if i else 0))
        t0 = max(0.0, start - delay_s - 1e-3)
        cap = float(trace.bits_between(t0, t0 + 1.0))
        if cap > 0:
            ratios.append(sent / cap)
    return {"bytes": int(b[-1]), "max_window_ratio": max(ratios) if ratios else None,
            "late_p99_s": float(np.percentile(late, 99)), "late_max_s": float(late.max())}


def _write_outages(out: Path, outages: list[Outage]) -> None:
    lines = ["start_s,end_s,reason"] + [
        f"{o.start_s:.6f},{o.end_s:.6f},\"{o.reason.replace(chr(34), chr(39))}\""
        for o in outages]
    (out / "outages.csv").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    from stac.cli import parse

    args = parse(build_parser(), argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    set_threads(args.threads)
    try:
        summary = stream(run_options(args, args.scheme_params), args.edge, args.device_id,
                         read_token(args.token_file, args.token), wait_go=args.wait_go,
                         feedback_timeout=args.feedback_timeout or None)
    except EdgeRefused as exc:
        print(f"stac-device: {exc}", file=sys.stderr)
        return 3
    except (ModelError, TraceError, FrameError, ValueError, OSError) as exc:
        print(f"stac-device: {exc}", file=sys.stderr)
        return 2
    fs = summary["frame_stats"]
    print(f"stac-device {args.device_id}: {summary['frames']} frames, "
          f"{summary['keyframes']} keyframes ({summary['dropped']} dropped), "
          f"delay p50 {fs['delay_s']['p50']} s, result age p50 {fs['result_age_s']['p50']} s, "
          f"mIoU {fs['miou']['mean']}, "
          f"outage {summary['outage_s']:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
