"""`stac-edge serve`: the edge as a real asyncio TCP server for many devices at once.

Each connected device gets its own `EdgeAgent` (its backbone state, caches, tuner). Every
agent call of every device runs on ONE compute worker thread, so devices contend for the
edge as they would for one GPU; the worker serves devices round robin (a device's
configuration step goes ahead of its own keyframes, not of other devices'). Each
connection follows the session rules of `stac.session`: the HELLO and its token first
(compared in constant time before the config is parsed), within an authentication
deadline. Connections are capped (in total, and before authentication), each session's
keyframe queue is bounded (a device that sends faster than it is served is slowed down by
TCP backpressure), and malformed, oversized, truncated or stalled messages and corrupt
keyframes get an ERROR with a one-line log and that connection is closed; the others
carry on. Running out of file descriptors or failing to write the summary is logged once
and survived.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import heapq
import itertools
import json
import logging
import resource
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stac import protocol
from stac.agents import EdgeAgent
from stac.codec.errors import BitstreamError
from stac.emu import streams
from stac.emu.auth import read_token
from stac.protocol import ErrorCode, ProtocolError, escape
from stac.schemes import UnknownSchemeError
from stac.session import Role, Session

log = logging.getLogger("stac.edge")

#: (Hello) -> the EdgeAgent for that device; raises SchemeError for an unknown scheme.
AgentFactory = Callable[[protocol.Hello], EdgeAgent]

FD_RESERVE = 32  # file descriptors kept free for the summary, logs, tables and the loop


@dataclass(frozen=True)
class EdgeOptions:
    """Server settings; timeouts in seconds."""

    host: str = "127.0.0.1"
    port: int = 0
    token: str = ""
    max_devices: int = 16
    max_connections: int = 256  # open connections of any kind (capped below RLIMIT_NOFILE)
    max_unauthenticated: int = 32  # connections that have not completed their HELLO
    hello_timeout: float = 5.0  # a connection must complete its HELLO within this
    read_timeout: float = 5.0  # a started message must complete within this
    idle_timeout: float = 60.0  # a session silent this long is closed
    max_body: int = protocol.MAX_BODY
    queued_keyframes: int = 4  # per session; more and the edge stops reading that device
    queued_configs: int = 2  # per session: configuration steps waiting for the worker


def connection_limit(requested: int, reserve: int = FD_RESERVE) -> int:
    """`requested`, lowered so that open connections leave `reserve` descriptors of this
    process's RLIMIT_NOFILE free (the summary must still be writable at the cap)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, soft - reserve))


class LogOnce:
    """Logs the first event of each kind, then only a count every `every` seconds, so a
    flood (of refused connections, of EMFILE) cannot flood the log."""

    def __init__(self, logger: logging.Logger, every: float = 10.0) -> None:
        self.logger = logger
        self.every = every
        self._seen: dict[str, list[float]] = {}  # kind -> [time last logged, count since]

    def __call__(self, kind: str, level: int, text: str, *args: Any) -> None:
        now = time.monotonic()
        entry = self._seen.get(kind)
        if entry is None:
            self._seen[kind] = [now, 0]
            self.logger.log(level, text, *args)
            return
        entry[1] += 1
        if now - entry[0] >= self.every:
            self.logger.log(level, "%s (%d more since the last report)", kind, entry[1])
            entry[0], entry[1] = now, 0


class Level:
    """A count that changes over time: its time-weighted mean since creation, and maximum."""

    def __init__(self) -> None:
        self.t_start = self._last = time.monotonic()
        self.value = 0
        self.max = 0
        self._area = 0.0

    def add(self, delta: int) -> None:
        now = time.monotonic()
        self._area += self.value * (now - self._last)
        self._last = now
        self.value += delta
        self.max = max(self.max, self.value)

    def integral(self) -> float:
        """Integral of the count over time so far (count x seconds)."""
        self.add(0)
        return self._area

    def mean(self) -> float:
        return self.integral() / max(self._last - self.t_start, 1e-9)


class FairQueue:
    """Jobs of many owners, served round robin across owners and, within one owner, by
    (priority, arrival): no owner's burst or urgent jobs delay another owner by more than
    one job each."""

    def __init__(self) -> None:
        self._jobs: dict[Hashable, list[tuple[int, int, Any]]] = {}
        self._ring: deque[Hashable] = deque()  # owners with jobs, next to serve first
        self._seq = itertools.count()

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self._jobs.values())

    def push(self, owner: Hashable, priority: int, item: Any) -> None:
        jobs = self._jobs.get(owner)
        if jobs is None:
            jobs = self._jobs[owner] = []
            self._ring.append(owner)
        heapq.heappush(jobs, (priority, next(self._seq), item))

    def pop(self) -> Any:
        """The next job: the first owner in the ring gives its most urgent one, then goes
        to the back of the ring (IndexError when empty)."""
        owner = self._ring.popleft()
        jobs = self._jobs[owner]
        item = heapq.heappop(jobs)[2]
        if jobs:
            self._ring.append(owner)
        else:
            del self._jobs[owner]
        return item


class ComputeWorker:
    """The edge's single compute resource: one thread, jobs served fairly (`FairQueue`)."""

    def __init__(self) -> None:
        self._queue = FairQueue()
        self._ready = asyncio.Semaphore(0)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-compute")
        self.t_start = time.monotonic()
        self.busy_s = 0.0
        self.jobs = 0
        self.queue = Level()  # jobs waiting for the worker
        self.queue_samples: list[int] = []  # queue length seen by each arriving job

    @property
    def pending(self) -> int:
        """Jobs waiting (not counting the one running)."""
        return self.queue.value

    async def call(self, fn: Callable[[], Any], priority: int = 1,
                   owner: Hashable = None) -> Any:
        """Run `fn()` on the compute thread in `owner`'s turn; returns its result. Lower
        `priority` goes first among the same owner's jobs."""
        future = asyncio.get_running_loop().create_future()
        self.queue_samples.append(self.pending)
        self._queue.push(owner, priority, (fn, future))
        self.queue.add(1)
        self._ready.release()
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.acquire()
            fn, future = self._queue.pop()
            self.queue.add(-1)
            if future.cancelled():
                continue
            t0 = time.monotonic()
            try:
                result = await loop.run_in_executor(self._executor, fn)
            except Exception as exc:  # the caller decides; the worker keeps serving
                if not future.cancelled():
                    future.set_exception(exc)
            else:
                if not future.cancelled():
                    future.set_result(result)
            finally:
                took = time.monotonic() - t0
                self.busy_s += took
                self.jobs += 1
                log.debug("compute job %d took %.3f s; %d waiting", self.jobs, took, self.pending)

    def stats(self) -> dict[str, Any]:
        """Utilisation and queue length since the worker started."""
        wall = max(time.monotonic() - self.t_start, 1e-9)
        samples = np.asarray(self.queue_samples or [0])
        return {"wall_s": wall, "busy_s": self.busy_s, "utilisation": self.busy_s / wall,
                "jobs": self.jobs, "queue_mean": self.queue.mean(),
                "queue_p95_at_arrival": float(np.percentile(samples, 95)),
                "queue_max": self.queue.max}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class DeviceStats:
    """What the edge did for one device session."""

    device_id: str
    scheme: str
    peer: str
    t_connected: float
    t_closed: float | None = None
    keyframes: int = 0
    keyframe_bytes: int = 0
    aborted: int = 0
    feedbacks: int = 0
    configs: int = 0
    compute_s: float = 0.0
    close_reason: str = ""


@dataclass
class EdgeServer:
    """Serves devices on (host, port) until `stop()`; `summary()` reports the edge's load."""

    options: EdgeOptions
    factory: AgentFactory
    model: str = ""
    worker: ComputeWorker = field(default_factory=ComputeWorker)
    sessions: list[DeviceStats] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    active: int = 0
    active_s: float = 0.0  # wall time with at least one device connected
    backlog: Level = field(default_factory=Level)  # keyframes received, not yet answered
    connections: Level = field(default_factory=Level)  # open connections, of any kind
    unauthenticated: Level = field(default_factory=Level)  # connections before their HELLO
    _active_since: float = 0.0

    def __post_init__(self) -> None:
        self.once = LogOnce(log)
        self.max_connections = connection_limit(self.options.max_connections)

    async def start(self) -> tuple[str, int]:
        """Bind and start serving; returns the bound address (port 0 picks a free port)."""
        self._worker_task = asyncio.create_task(self.worker.run())
        self._server = await asyncio.start_server(self._handle, self.options.host,
                                                  self.options.port)
        self._tasks: set[asyncio.Task] = set()
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def stop(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._worker_task.cancel()
        self.worker.close()

    def _refuse(self, code: ErrorCode) -> None:
        self.refused[code.name] = self.refused.get(code.name, 0) + 1

    def _over_capacity(self) -> str | None:
        """Why a new connection is turned away at once, or None to serve it."""
        if self.connections.value >= self.max_connections:
            return f"{self.max_connections} connections open"
        if self.unauthenticated.value >= self.options.max_unauthenticated:
            return f"{self.options.max_unauthenticated} connections not yet authenticated"
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (full := self._over_capacity()) is not None:  # nothing read, nothing awaited
            self._refuse(ErrorCode.BUSY)
            self.once("connection refused", logging.WARNING,
                      "connection refused: %s (further refusals are counted)", full)
            try:
                writer.write(protocol.encode(protocol.Error(int(ErrorCode.BUSY), full)))
            except OSError:
                pass
            writer.close()
            return
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections.add(1)
        peername = writer.get_extra_info("peername") or ("?", 0)
        peer = "{}:{}".format(*peername[:2])
        try:
            await self._session(reader, writer, peer)
        except ProtocolError as exc:
            log.warning("device %s: %s; closing the connection", peer, escape(exc))
            self._refuse(exc.code)
            await _send_quietly(writer, protocol.Error(code=int(exc.code), text=exc.text))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("device %s: connection lost (%s)", peer, escape(exc))
        except asyncio.CancelledError:
            await _send_quietly(writer, protocol.Bye(reason="edge shutting down"))
        except OSError as exc:  # EMFILE while building an agent, a failing socket
            self.once(f"OSError {exc.errno}", logging.ERROR, "device %s: %s", peer, escape(exc))
            self._refuse(ErrorCode.INTERNAL)
            await _send_quietly(writer, protocol.Error(code=int(ErrorCode.INTERNAL),
                                                       text=f"edge error: {exc.strerror}"))
        except Exception as exc:  # an agent failed on valid input: report it, keep serving others
            log.exception("device %s: edge failure", peer)
            self._refuse(ErrorCode.INTERNAL)
            await _send_quietly(writer, protocol.Error(code=int(ErrorCode.INTERNAL),
                                                       text=f"{type(exc).__name__}: {exc}"))
        finally:
            writer.close()
            self.connections.add(-1)
            self._tasks.discard(task)

    async def _read(self, reader: asyncio.StreamReader, session: Session,
                    idle: float) -> protocol.Message | None:
        frame = await streams.read_frame(reader, timeout=self.options.read_timeout,
                                         idle_timeout=idle, max_body=self.options.max_body,
                                         check=session.check_header)
        return None if frame is None else session.receive_frame(*frame)

    async def _authenticate(self, reader: asyncio.StreamReader,
                            session: Session) -> protocol.Hello | None:
        """The HELLO (token checked before its config is parsed) within the deadline."""
        timeout = self.options.hello_timeout
        self.unauthenticated.add(1)
        try:
            return await asyncio.wait_for(self._read(reader, session, timeout), timeout)
        except asyncio.TimeoutError:
            raise ProtocolError(ErrorCode.TIMEOUT,
                                f"no complete HELLO within {timeout} s") from None
        finally:
            self.unauthenticated.add(-1)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       peer: str) -> None:
        session = Session(Role.EDGE, token=self.options.token)
        hello = await self._authenticate(reader, session)
        if hello is None:
            return
        if self.active >= self.options.max_devices:
            raise ProtocolError(ErrorCode.BUSY,
                                f"edge serves its maximum of {self.options.max_devices} devices")
        if self.active == 0:
            self._active_since = time.monotonic()
        self.active += 1
        stats = DeviceStats(device_id=hello.device_id, scheme=hello.scheme, peer=peer,
                            t_connected=time.monotonic() - self.worker.t_start)
        owner = object()  # this session's turn at the compute worker
        try:
            try:
                agent = await self.worker.call(lambda: self.factory(hello), priority=0,
                                               owner=owner)
            except UnknownSchemeError as exc:
                raise ProtocolError(ErrorCode.UNKNOWN_SCHEME, str(exc)) from None
            except (ValueError, TypeError) as exc:  # SchemeError: bad parameters or stream
                raise ProtocolError(ErrorCode.MALFORMED, f"bad HELLO config: {exc}") from None
            self.sessions.append(stats)
            log.info("device %s (%s) connected from %s", hello.device_id, hello.scheme, peer)
            answer = protocol.Hello(device_id="edge", scheme=hello.scheme,
                                    config={"model": self.model})
            session.send(answer)
            await streams.write_message(writer, answer)
            stats.close_reason = await self._serve(agent, reader, writer, stats, session, owner)
        except BaseException as exc:
            stats.close_reason = escape(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.active -= 1
            if self.active == 0:
                self.active_s += time.monotonic() - self._active_since
            stats.t_closed = time.monotonic() - self.worker.t_start
            log.info("device %s: session closed (%s)", hello.device_id, stats.close_reason)

    async def _serve(self, agent: EdgeAgent, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, stats: DeviceStats, session: Session,
                     owner: object) -> str:
        """The session loop: keyframes through the worker in order (at most
        `queued_keyframes` waiting: then the device is not read until one is served), the
        device's configuration steps ahead of its own keyframes."""
        assembler = protocol.Reassembler(self.options.max_body)
        keyframes: asyncio.Queue = asyncio.Queue(maxsize=self.options.queued_keyframes)
        config_slots = asyncio.Semaphore(self.options.queued_configs)
        content: dict[int, protocol.Content] = {}
        send_lock = asyncio.Lock()

        async def send(msg: protocol.Message) -> None:
            async with send_lock:
                session.send(msg)
                await streams.write_message(writer, msg)

        async def run_keyframes() -> None:
            while True:
                kf = await keyframes.get()
                t0 = time.monotonic()
                try:
                    out = await self.worker.call(lambda kf=kf: agent.on_keyframe(kf),
                                                 owner=owner)
                except BitstreamError as exc:
                    raise ProtocolError(ErrorCode.MALFORMED,
                                        f"keyframe {kf.index}: {exc}") from None
                finally:
                    self.backlog.add(-1)
                stats.compute_s += time.monotonic() - t0
                await send(out.feedback)
                stats.feedbacks += 1

        async def config_step(report: protocol.Report) -> None:
            try:
                config = await self.worker.call(lambda: agent.on_second(
                    report.second, report.bitrate_kbps, report.bandwidth_kbps,
                    content.pop(report.second, None)), priority=0, owner=owner)
            finally:
                config_slots.release()
            if config is not None:
                await send(config)
                stats.configs += 1

        async def read_device() -> str:
            while True:
                msg = await self._read(reader, session, self.options.idle_timeout)
                if msg is None:
                    return "device closed the connection"
                if isinstance(msg, protocol.Part):
                    before = assembler.aborted
                    msg = assembler.feed(msg)
                    stats.aborted += assembler.aborted - before
                    if msg is None:
                        continue
                    session.receive_part_content(msg)
                if isinstance(msg, protocol.Keyframe):
                    stats.keyframes += 1
                    stats.keyframe_bytes += len(msg.payload)
                    await keyframes.put(msg)  # waits while the queue is full: backpressure
                    self.backlog.add(1)
                elif isinstance(msg, protocol.Content):
                    if len(content) < 64:  # steps consume them; a flood is dropped
                        content[msg.second] = msg
                elif isinstance(msg, protocol.Report):
                    await config_slots.acquire()
                    task = asyncio.create_task(config_step(msg))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                elif isinstance(msg, protocol.Bye):
                    return f"device said bye ({escape(msg.reason)})"

        pending: set[asyncio.Task] = set()
        keyframe_task = asyncio.create_task(run_keyframes())
        reader_task = asyncio.create_task(read_device())
        try:
            # whichever ends first ends the session: a corrupt keyframe is answered at once
            await asyncio.wait({keyframe_task, reader_task},
                               return_when=asyncio.FIRST_COMPLETED)
            if keyframe_task.done():
                keyframe_task.result()  # re-raise an agent failure
            return reader_task.result()
        finally:
            for task in (keyframe_task, reader_task, *pending):
                task.cancel()
            await asyncio.gather(keyframe_task, reader_task, *pending, return_exceptions=True)
            self.backlog.add(-keyframes.qsize())  # left unanswered with the session

    def summary(self) -> dict[str, Any]:
        """The edge's load: compute utilisation, queue lengths, per-device counts."""
        active_s = self.active_s + (time.monotonic() - self._active_since if self.active else 0)
        compute = self.worker.stats()
        compute["active_s"] = active_s
        compute["utilisation_active"] = compute["busy_s"] / active_s if active_s > 0 else None
        # means over the time with devices connected (the edge idles before and after)
        compute["queue_mean_active"] = self.worker.queue.integral() / active_s \
            if active_s > 0 else None
        compute["backlog_mean_active"] = self.backlog.integral() / active_s \
            if active_s > 0 else None  # keyframes received and not yet answered, all devices
        compute["backlog_max"] = self.backlog.max
        return {"model": self.model, "compute": compute,
                "devices": [vars(s) for s in self.sessions], "refused": dict(self.refused),
                "connections": {"max": self.connections.max, "limit": self.max_connections,
                                "unauthenticated_max": self.unauthenticated.max}}


async def _send_quietly(writer: asyncio.StreamWriter, msg: protocol.Message) -> None:
    try:
        await asyncio.wait_for(streams.write_message(writer, msg), 1.0)
    except (OSError, asyncio.TimeoutError, ProtocolError):
        pass


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a reader never sees a half-written file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def _write_summary(server: EdgeServer, path: Path) -> None:
    """The periodic summary write: an OSError (no descriptor left, disk full) is logged
    once and the edge keeps serving; the next write tries again."""
    try:
        write_json(path, server.summary())
    except OSError as exc:
        server.once(f"summary write {exc.errno}", logging.ERROR,
                    "cannot write %s (%s); serving on, retrying every 2 s", path, escape(exc))


_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def _loop_exception_handler(once: LogOnce) -> Callable[[asyncio.AbstractEventLoop, dict], None]:
    """asyncio's handler, except that running out of descriptors or buffers (asyncio's
    accept loop pauses and retries by itself) is logged once, without a traceback."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
            once(f"accept {exc.errno}", logging.ERROR,
                 "%s: %s (connections wait in the listen backlog)",
                 context.get("message", "socket error"), escape(exc))
            return
        loop.default_exception_handler(context)

    return handler


async def serve(options: EdgeOptions, factory: AgentFactory, model: str = "",
                out: Path | None = None, ready: Callable[[str, int], None] | None = None,
                stop: asyncio.Event | None = None) -> dict[str, Any]:
    """Run an edge server until `stop` is set (or SIGINT/SIGTERM); returns its summary."""
    server = EdgeServer(options, factory, model=model)
    if not options.token:
        log.warning("no token set: authentication is off and any local process may connect "
                    "(set STAC_TOKEN or --token-file)")
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_exception_handler(server.once))
    host, port = await server.start()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    if ready is not None:
        ready(host, port)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
            if out is not None:
                _write_summary(server, out / "edge_summary.json")
    finally:
        await server.stop()
        summary = server.summary()
        if out is not None:
            _write_summary(server, out / "edge_summary.json")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stac-edge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("serve", help="serve devices over TCP until interrupted")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one)")
    p.add_argument("--model", default=None,
                   help="edge model: shipped name, checkpoint path or 'untrained:NAME'")
    p.add_argument("--token-file", type=Path, default=None,
                   help="file whose first line is the secret every device must present "
                        "(default: $STAC_TOKEN; empty: no authentication)")
    p.add_argument("--token", default=None,
                   help="the secret on the command line (visible to local users: prefer "
                        "--token-file or $STAC_TOKEN)")
    p.add_argument("--seed", type=int, default=0, help="seed of an untrained:NAME model")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of the compute worker (default: torch's choice)")
    p.add_argument("--max-devices", type=int, default=16)
    p.add_argument("--max-connections", type=int, default=256,
                   help="open connections of any kind (lowered to RLIMIT_NOFILE - "
                        f"{FD_RESERVE})")
    p.add_argument("--max-unauthenticated", type=int, default=32,
                   help="connections that have not completed their HELLO")
    p.add_argument("--hello-timeout", type=float, default=5.0,
                   help="seconds a connection has to complete its HELLO")
    p.add_argument("--tables", action="append", default=[], metavar="FILE",
                   help="a table file devices may name (by its name or stem) besides the "
                        "shipped ones; repeatable")
    p.add_argument("--tuner-file", action="append", default=[], metavar="FILE",
                   help="a profile or weights file devices' tuner specs may name "
                        "(offline:FILE, nn:FILE); repeatable")
    p.add_argument("--read-timeout", type=float, default=5.0,
                   help="seconds a started message may take to complete")
    p.add_argument("--idle-timeout", type=float, default=60.0,
                   help="seconds of silence after which a session is closed")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for edge_summary.json (written every 2 s and at exit)")
    p.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from stac.emu.build import edge_factory, set_threads  # imports torch: after arg errors

    set_threads(args.threads)

    if args.max_devices < 1:
        print("stac-edge: --max-devices must be >= 1", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    from edge.models.registry import ModelError

    try:
        token = read_token(args.token_file, args.token)
    except OSError as exc:
        print(f"stac-edge: cannot read --token-file: {exc}", file=sys.stderr)
        return 2
    try:
        factory, model_name = edge_factory(args.model, seed=args.seed, tables=args.tables,
                                           tuner_files=args.tuner_file)
    except ModelError as exc:
        print(f"stac-edge: {exc}\n  (pass a checkpoint path with --model, or "
              "'untrained:NAME' for a mechanics-only run)", file=sys.stderr)
        return 2
    options = EdgeOptions(host=args.host, port=args.port, token=token,
                          max_devices=args.max_devices, max_connections=args.max_connections,
                          max_unauthenticated=args.max_unauthenticated,
                          hello_timeout=args.hello_timeout, read_timeout=args.read_timeout,
                          idle_timeout=args.idle_timeout)

    def ready(host: str, port: int) -> None:
        print(f"stac-edge listening on {host}:{port}", flush=True)

    summary = asyncio.run(serve(options, factory, model=model_name, out=args.out, ready=ready))
    c = summary["compute"]
    print(f"stac-edge: {len(summary['devices'])} sessions, {c['jobs']} compute jobs, "
          f"utilisation {c['utilisation']:.0%}, mean queue {c['queue_mean']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
