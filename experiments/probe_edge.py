"""Probe of the hardened edge (issue 13) on loopback; prints JSON.

Runs the same legitimate device stream twice against a fresh `stac-edge serve` process
whose descriptor limit is lowered (RLIMIT_NOFILE = --nofile): once alone, once while this
probe attacks the edge with
  - a flood of unauthenticated connections, past the edge's descriptor limit, held open
    and reopened;
  - HELLOs with a config nested 20,000 levels deep (wrong token, and no token at all);
  - HELLOs whose header announces 16 MiB, followed by as many bytes as the edge reads;
  - a second, authenticated device that bursts 200 keyframes as fast as TCP takes them.
It reports the legitimate device's result delay (p50, p95) attacked vs unattacked, the
edge's peak RSS (VmHWM) in both runs, whether the edge stayed up, and what it refused.
Loopback only (127.0.0.1); every count and duration is bounded; it stops by itself.

    python experiments/probe_edge.py [--duration 8] [--size 160x120] [--nofile 256]
                                     [--attacks flood,deep_json,big_hello,burst]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stac import protocol as P  # noqa: E402
from stac.codec.reference import jpeg_encode  # noqa: E402
from stac.emu import streams  # noqa: E402
from stac.emu.build import hello_config  # noqa: E402
from stac.frames import open_source  # noqa: E402
from stac.schemes import Stream, make_scheme  # noqa: E402

HOST = "127.0.0.1"
TOKEN = "probe-secret"
MODEL = "untrained:bisenet"
ATTACKS = ("flood", "deep_json", "big_hello", "burst")


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "STAC_TOKEN": TOKEN, "STAC_CACHE": str(cache),
            "PYTHONPATH": str(REPO)}


def start_edge(out: Path, nofile: int, cache: Path) -> tuple[subprocess.Popen, int]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stac.emu.edge_main", "serve", "--host", HOST, "--port", "0",
         "--model", MODEL, "--seed", "0", "--threads", "1", "--max-devices", "4",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=open(out / "edge.log", "w"),  # noqa: SIM115
        text=True, env=_env(cache), preexec_fn=limit)
    line = proc.stdout.readline()
    if not line.startswith("stac-edge listening on "):
        raise RuntimeError(f"the edge did not start: {line!r}; see {out}/edge.log")
    return proc, int(line.rsplit(":", 1)[1])


def start_device(port: int, out: Path, args: argparse.Namespace,
                 cache: Path) -> subprocess.Popen:
    w, h = args.size
    proc = subprocess.Popen(
        [sys.executable, "-m", "stac.emu.device_main", "stream", "--edge", f"{HOST}:{port}",
         "--out", str(out), "--trace", str(REPO / "traces" / "lte.csv"),
         "--scheme", "h264", "--model", MODEL, "--size", f"{w}x{h}", "--fps", str(args.fps),
         "--duration", str(args.duration), "--seed", "0", "--threads", "1", "--wait-go",
         "--device-id", "legit"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(out.with_suffix(".log"), "w"),  # noqa: SIM115
        text=True, env=_env(cache))
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the device failed before streaming; see {out}.log")
    return proc


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a running process so far (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_peak_mib(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ----------------------------------------------------------------------------- attacks


class Attack:
    """The attackers of one run; `counts` says what each did and how the edge answered."""

    def __init__(self, port: int, args: argparse.Namespace) -> None:
        self.port = port
        self.args = args
        self.counts: dict[str, int] = {}
        self.stop = asyncio.Event()

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    async def _connect(self):
        return await asyncio.wait_for(asyncio.open_connection(HOST, self.port), 2.0)

    async def flood(self) -> None:
        """Keep up to `--flood` silent connections open (past the edge's descriptor limit)."""
        held: list[asyncio.StreamWriter] = []
        while not self.stop.is_set():
            held = [w for w in held if not w.is_closing() and not w.transport.is_closing()]
            while len(held) < self.args.flood and not self.stop.is_set():
                try:
                    _, writer = await self._connect()
                except (OSError, asyncio.TimeoutError):
                    self.count("flood_connect_failed")
                    break
                held.append(writer)
                self.count("flood_connections")
            self.counts["flood_held_max"] = max(self.counts.get("flood_held_max", 0), len(held))
            await asyncio.sleep(0.2)
        for writer in held:
            writer.close()

    async def _hello_answer(self, data: bytes, label: str) -> None:
        try:
            reader, writer = await self._connect()
        except (OSError, asyncio.TimeoutError):
            self.count(f"{label}_connect_failed")
            return
        try:
            writer.write(data)
            await writer.drain()
            msg = await streams.read_message(reader, timeout=10, idle_timeout=10)
            code = P.ErrorCode(msg.code).name if isinstance(msg, P.Error) else repr(msg)
            self.count(f"{label}_answer_{code}")
        except (OSError, P.ProtocolError, asyncio.TimeoutError):
            self.count(f"{label}_closed")
        finally:
            writer.close()

    async def deep_json(self) -> None:
        """HELLOs with a 20,000-level deep config, with a wrong token and with none."""
        deep = b"[" * 20_000 + b"]" * 20_000
        for token in (b"guess", b"") * 20:
            if self.stop.is_set():
                return
            body = (struct.pack("!BH", P.PROTOCOL_VERSION, 4) + b"deep" + struct.pack("!H", 4)
                    + b"jpeg" + struct.pack("!I", len(deep)) + deep
                    + struct.pack("!H", len(token)) + token)
            frame = P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.MessageType.HELLO,
                                  len(body)) + body
            await self._hello_answer(frame, "deep_json")
            await asyncio.sleep(0.05)

    async def big_hello(self) -> None:
        """Three at a time: a header announcing a 16 MiB HELLO, then 16 MiB of body."""
        header = P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.MessageType.HELLO, 16 * 2**20)

        async def one() -> None:
            await self._hello_answer(header + b"{" * (16 * 2**20), "big_hello")

        for _ in range(5):
            if self.stop.is_set():
                return
            await asyncio.gather(one(), one(), one())

    async def burst(self) -> None:
        """An authenticated device that sends 200 keyframes at once and reads the answers."""
        w, h = self.args.size
        frames = [jpeg_encode(f.rgb, quality=50)
                  for f in open_source("default", size=(w, h), max_frames=4)]
        config = hello_config(make_scheme("jpeg"), Stream(source_fps=25.0, frame_size=(w, h)))
        reader, writer = await self._connect()
        await streams.write_message(writer, P.Hello("burst", "jpeg", config, TOKEN))
        ack = await streams.read_message(reader, timeout=30, idle_timeout=60)
        if not isinstance(ack, P.Hello):
            self.count("burst_refused")
            return

        async def answers() -> None:
            while (msg := await streams.read_message(reader, timeout=30,
                                                     idle_timeout=60)) is not None:
                self.count("burst_feedbacks" if isinstance(msg, P.Feedback) else "burst_other")
                if self.counts.get("burst_feedbacks", 0) >= 200:
                    return

        reading = asyncio.create_task(answers())
        t0 = time.monotonic()
        for i in range(200):
            writer.write(P.encode(P.Keyframe(i, i / 25, frames[i % len(frames)])))
            await writer.drain()  # the edge's bounded queue slows this down
            self.count("burst_keyframes")
        self.counts["burst_send_ms"] = int(1000 * (time.monotonic() - t0))
        try:
            await asyncio.wait_for(reading, self.args.duration + 30)
        except (asyncio.TimeoutError, OSError, P.ProtocolError):
            pass
        writer.close()

    async def run(self, until: float) -> None:
        names = self.args.attacks
        tasks = [asyncio.create_task(getattr(self, name)()) for name in names]
        await asyncio.sleep(until)
        self.stop.set()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for name, r in zip(names, results, strict=True):
            if isinstance(r, Exception) and not isinstance(r, asyncio.CancelledError):
                self.count(f"{name}_error_{type(r).__name__}")


# ----------------------------------------------------------------------------- one run


def one_run(args: argparse.Namespace, out: Path, attacked: bool, cache: Path) -> dict:
    edge, port = start_edge(out / "edge", args.nofile, cache)
    peak = 0.0
    attack = None
    probe_cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    try:
        device = start_device(port, out / "device", args, cache)
        edge_cpu0 = cpu_s(edge.pid) or 0.0
        device.stdin.write("go\n")
        device.stdin.flush()
        if attacked:
            attack = Attack(port, args)
            asyncio.run(attack.run(args.duration + 1.0))
        deadline = time.monotonic() + args.duration + 120
        while device.poll() is None and time.monotonic() < deadline:
            peak = max(peak, rss_peak_mib(edge.pid) or 0.0)
            time.sleep(0.2)
        if device.poll() is None:
            device.kill()
        device.wait()
        peak = max(peak, rss_peak_mib(edge.pid) or 0.0)
        edge_cpu = (cpu_s(edge.pid) or 0.0) - edge_cpu0
        probe_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - probe_cpu0
        alive = edge.poll() is None
    finally:
        if edge.poll() is None:
            edge.send_signal(signal.SIGTERM)
            try:
                edge.wait(30)
            except subprocess.TimeoutExpired:
                edge.kill()
    summary = json.loads((out / "device" / "summary.json").read_text())
    edge_summary = json.loads((out / "edge" / "edge_summary.json").read_text())
    delay = summary["frame_stats"]["delay_s"]
    log = (out / "edge" / "edge.log").read_text()
    return {"device_exit": device.returncode, "delay_p50_s": delay["p50"],
            "delay_p95_s": delay["p95"], "feedbacks": summary["feedbacks"],
            "outage_s": summary["outage_s"], "edge_alive": alive, "edge_exit": edge.returncode,
            "edge_rss_peak_mib": round(peak, 1), "edge_cpu_s": round(edge_cpu, 2),
            "probe_cpu_s": round(probe_cpu, 2), "edge_refused": edge_summary["refused"],
            "edge_connections": edge_summary.get("connections"),
            "edge_log_lines": len(log.splitlines()), "edge_tracebacks": log.count("Traceback"),
            "attack": attack.counts if attack else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--nofile", type=int, default=256, help="the edge's RLIMIT_NOFILE")
    parser.add_argument("--flood", type=int, default=400,
                        help="silent connections the flood keeps open (above --nofile)")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"comma-separated subset of {','.join(ATTACKS)}")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.attacks = args.attacks.split(",")
    if unknown := set(args.attacks) - set(ATTACKS):
        parser.error(f"unknown attacks {sorted(unknown)}; known: {', '.join(ATTACKS)}")
    args.size = tuple(int(v) for v in args.size.split("x"))
    out = args.out or Path(tempfile.mkdtemp(prefix="probe_edge_"))
    cache = out / "cache"
    base = one_run(args, out / "unattacked", False, cache)
    hit = one_run(args, out / "attacked", True, cache)
    ratio = hit["delay_p95_s"] / base["delay_p95_s"] if base["delay_p95_s"] else None
    print(json.dumps({
        "command": " ".join(sys.argv), "load_avg": os.getloadavg(), "out": str(out),
        "size": list(args.size), "duration_s": args.duration, "nofile": args.nofile,
        "attacks": args.attacks,
        "p95_ratio_attacked_over_unattacked": ratio,
        "rss_increase_mib": round(hit["edge_rss_peak_mib"] - base["edge_rss_peak_mib"], 1),
        "unattacked": base, "attacked": hit}, indent=2, default=str))


if __name__ == "__main__":
    main()
