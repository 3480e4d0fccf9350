"""`stac-edge serve`: the edge as a real asyncio TCP server for many devices at once.

Each connected device gets its own `EdgeAgent` (its backbone state, caches, tuner). Every
agent call of every device runs on ONE compute worker thread fed by a priority queue, so
devices contend for the edge as they would for one GPU; the per-second configuration step
(STAC §VI) goes ahead of queued keyframes. Devices must present `--token` (compared in
constant time) before anything else is processed; malformed, oversized, truncated or
stalled messages get an ERROR and that connection is closed, the others carry on.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import itertools
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stac import protocol
from stac.agents import EdgeAgent
from stac.protocol import ErrorCode, ProtocolError
from stac.schemes import UnknownSchemeError

log = logging.getLogger("stac.edge")

#: (Hello) -> the EdgeAgent for that device; raises SchemeError for an unknown scheme.
AgentFactory = Callable[[protocol.Hello], EdgeAgent]


@dataclass(frozen=True)
class EdgeOptions:
    """Server settings; timeouts in seconds."""

    host: str = "127.0.0.1"
    port: int = 0
    token: str = ""
    max_devices: int = 16
    hello_timeout: float = 5.0  # a connection must say HELLO within this
    read_timeout: float = 5.0  # a started message must complete within this
    idle_timeout: float = 60.0  # a session silent this long is closed
    max_body: int = protocol.MAX_BODY


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


class ComputeWorker:
    """The edge's single compute resource: one thread, jobs in (priority, arrival) order."""

    def __init__(self) -> None:
        self._queue: asyncio.PriorityQueue = asyncio.PriorityQueue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-compute")
        self._seq = itertools.count()
        self.t_start = time.monotonic()
        self.busy_s = 0.0
        self.jobs = 0
        self.queue = Level()  # jobs waiting for the worker
        self.queue_samples: list[int] = []  # queue length seen by each arriving job

    @property
    def pending(self) -> int:
        """Jobs waiting (not counting the one running)."""
        return self._queue.qsize()

    async def call(self, fn: Callable[[], Any], priority: int = 1) -> Any:
        """Run `fn()` on the compute thread after the jobs ahead of it; returns its result."""
        future = asyncio.get_running_loop().create_future()
        self.queue_samples.append(self.pending)
        self._queue.put_nowait((priority, next(self._seq), fn, future))
        self.queue.add(1)
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            _, _, fn, future = await self._queue.get()
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
    _active_since: float = 0.0

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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        try:
            await self._session(reader, writer, peer)
        except ProtocolError as exc:
            log.warning("device %s: %s; closing the connection", peer, exc)
            self._refuse(exc.code)
            await _send_quietly(writer, protocol.Error(code=int(exc.code), text=exc.text))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("device %s: connection lost (%s)", peer, exc)
        except asyncio.CancelledError:
            await _send_quietly(writer, protocol.Bye(reason="edge shutting down"))
        except Exception as exc:  # an agent failed on valid input: report it, keep serving others
            log.exception("device %s: edge failure", peer)
            self._refuse(ErrorCode.INTERNAL)
            await _send_quietly(writer, protocol.Error(code=int(ErrorCode.INTERNAL),
                                                       text=f"{type(exc).__name__}: {exc}"))
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _read(self, reader: asyncio.StreamReader, idle: float) -> protocol.Message | None:
        return await protocol.read_message(reader, timeout=self.options.read_timeout,
                                           idle_timeout=idle, max_body=self.options.max_body)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       peer: str) -> None:
        hello = await self._read(reader, self.options.hello_timeout)
        if hello is None:
            return
        if not isinstance(hello, protocol.Hello):
            raise ProtocolError(ErrorCode.UNEXPECTED,
                                f"expected HELLO first, got {type(hello).__name__}")
        if self.options.token and not hmac.compare_digest(hello.token.encode("utf-8"),
                                                          self.options.token.encode("utf-8")):
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "wrong or missing token")
        if self.active >= self.options.max_devices:
            raise ProtocolError(ErrorCode.BUSY,
                                f"edge serves its maximum of {self.options.max_devices} devices")
        if self.active == 0:
            self._active_since = time.monotonic()
        self.active += 1
        stats = DeviceStats(device_id=hello.device_id, scheme=hello.scheme, peer=peer,
                            t_connected=time.monotonic() - self.worker.t_start)
        try:
            try:
                agent = await self.worker.call(lambda: self.factory(hello), priority=0)
            except UnknownSchemeError as exc:
                raise ProtocolError(ErrorCode.UNKNOWN_SCHEME, str(exc)) from None
            except (ValueError, TypeError) as exc:
                raise ProtocolError(ErrorCode.MALFORMED, f"bad HELLO config: {exc}") from None
            self.sessions.append(stats)
            log.info("device %s (%s) connected from %s", hello.device_id, hello.scheme, peer)
            await protocol.write_message(writer, protocol.Hello(
                device_id="edge", scheme=hello.scheme, config={"model": self.model}))
            stats.close_reason = await self._serve(agent, reader, writer, stats)
        except BaseException as exc:
            stats.close_reason = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.active -= 1
            if self.active == 0:
                self.active_s += time.monotonic() - self._active_since
            stats.t_closed = time.monotonic() - self.worker.t_start
            log.info("device %s: session closed (%s)", hello.device_id, stats.close_reason)

    async def _serve(self, agent: EdgeAgent, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, stats: DeviceStats) -> str:
        """The session loop: keyframes through the worker in order, config steps first."""
        assembler = protocol.Reassembler(self.options.max_body)
        keyframes: asyncio.Queue = asyncio.Queue()
        content: dict[int, protocol.Content] = {}
        send_lock = asyncio.Lock()

        async def send(msg: protocol.Message) -> None:
            async with send_lock:
                await protocol.write_message(writer, msg)

        async def run_keyframes() -> None:
            while True:
                kf = await keyframes.get()
                t0 = time.monotonic()
                try:
                    out = await self.worker.call(lambda kf=kf: agent.on_keyframe(kf))
                finally:
                    self.backlog.add(-1)
                stats.compute_s += time.monotonic() - t0
                await send(out.feedback)
                stats.feedbacks += 1

        async def config_step(report: protocol.Report) -> None:
            config = await self.worker.call(lambda: agent.on_second(
                report.second, report.bitrate_kbps, report.bandwidth_kbps,
                content.pop(report.second, None)), priority=0)
            if config is not None:
                await send(config)
                stats.configs += 1

        pending: set[asyncio.Task] = set()
        keyframe_task = asyncio.create_task(run_keyframes())
        try:
            while True:
                msg = await self._read(reader, self.options.idle_timeout)
                if msg is None:
                    return "device closed the connection"
                if isinstance(msg, protocol.Part):
                    before = assembler.aborted
                    msg = assembler.feed(msg)
                    stats.aborted += assembler.aborted - before
                    if msg is None:
                        continue
                if isinstance(msg, protocol.Keyframe):
                    stats.keyframes += 1
                    stats.keyframe_bytes += len(msg.payload)
                    self.backlog.add(1)
                    keyframes.put_nowait(msg)
                elif isinstance(msg, protocol.Content):
                    content[msg.second] = msg
                elif isinstance(msg, protocol.Report):
                    task = asyncio.create_task(config_step(msg))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                elif isinstance(msg, protocol.Bye):
                    return f"device said bye ({msg.reason})"
                else:
                    raise ProtocolError(ErrorCode.UNEXPECTED,
                                        f"a device does not send {type(msg).__name__}")
                if keyframe_task.done():
                    keyframe_task.result()  # re-raise an agent failure
        finally:
            keyframe_task.cancel()
            for task in pending:
                task.cancel()
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
                "devices": [vars(s) for s in self.sessions], "refused": dict(self.refused)}


async def _send_quietly(writer: asyncio.StreamWriter, msg: protocol.Message) -> None:
    try:
        await asyncio.wait_for(protocol.write_message(writer, msg), 1.0)
    except (OSError, asyncio.TimeoutError, ProtocolError):
        pass


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a reader never sees a half-written file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


async def serve(options: EdgeOptions, factory: AgentFactory, model: str = "",
                out: Path | None = None, ready: Callable[[str, int], None] | None = None,
                stop: asyncio.Event | None = None) -> dict[str, Any]:
    """Run an edge server until `stop` is set (or SIGINT/SIGTERM); returns its summary."""
    server = EdgeServer(options, factory, model=model)
    host, port = await server.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
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
                write_json(out / "edge_summary.json", server.summary())
    finally:
        await server.stop()
        summary = server.summary()
        if out is not None:
            write_json(out / "edge_summary.json", summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stac-edge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("serve", help="serve devices over TCP until interrupted")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one)")
    p.add_argument("--model", default=None,
                   help="edge model: shipped name, checkpoint path or 'untrained:NAME'")
    p.add_argument("--token", default="", help="secret every device must present")
    p.add_argument("--seed", type=int, default=0, help="seed of an untrained:NAME model")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of the compute worker (default: torch's choice)")
    p.add_argument("--max-devices", type=int, default=16)
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
        factory, model_name = edge_factory(args.model, seed=args.seed)
    except ModelError as exc:
        print(f"stac-edge: {exc}\n  (pass a checkpoint path with --model, or "
              "'untrained:NAME' for a mechanics-only run)", file=sys.stderr)
        return 2
    options = EdgeOptions(host=args.host, port=args.port, token=args.token,
                          max_devices=args.max_devices, read_timeout=args.read_timeout,
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
