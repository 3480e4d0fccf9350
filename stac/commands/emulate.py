"""`stac-sim emulate`: one edge and N device processes over loopback TCP, in wall time.

Starts `stac-edge serve` on a free loopback port, then N `stac-device stream` processes;
when all are connected their cameras start together. Waits for the devices, stops the edge
cleanly (SIGTERM: it writes its summary), and writes OUT/device-I/ (the simulator's
schema, plus outages.csv), OUT/edge/edge_summary.json and OUT/emulation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stac.sim.runner import RunOptions

EDGE_START_TIMEOUT_S = 300.0  # model loading on a busy machine


def register(subparsers: argparse._SubParsersAction) -> None:
    from stac.options import add_stream_arguments

    p = subparsers.add_parser(
        "emulate", help="run an edge and N devices as processes over loopback TCP",
        description=__doc__.splitlines()[0])
    add_stream_arguments(p)
    p.add_argument("--devices", type=int, default=1, help="number of device processes")
    p.add_argument("--token-file", type=Path, default=None,
                   help="file whose first line is the secret shared by the edge and the "
                        "devices (default: $STAC_TOKEN); the processes get it through "
                        "their environment, never on their command lines")
    p.add_argument("--token", default=None,
                   help="the secret on this command line (prefer --token-file)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=main)


def _threads(args: argparse.Namespace) -> int:
    """Torch threads per process: 1 unless asked (N+1 processes share the cores)."""
    return 1 if getattr(args, "threads", None) is None else args.threads


def _frames_written(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return max(0, sum(1 for _ in f) - 1)
    except OSError:
        return 0


def _stop(proc: subprocess.Popen, grace: float = 15.0) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def emulate(options: RunOptions, devices: int = 1, token: str = "", threads: int = 1,
            progress: bool = True) -> dict[str, Any]:
    """Run `options` as an edge and `devices` device processes (each with `threads` torch
    threads). Returns OUT/emulation.json's content.

    Everything is written into a temporary folder renamed to `options.out` when the
    emulation completes (`stac.results.RunFolder`; a failure leaves OUT.failed/ with
    error.txt)."""
    from stac.results import RunFolder

    with RunFolder(options.out, overwrite=options.overwrite) as out:
        return _emulate(options, out, devices, token, threads, progress)


def _emulate(options: RunOptions, out: Path, devices: int, token: str, threads: int,
             progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    from stac.emu.auth import ENV
    from stac.emu.build import build_stream
    from stac.options import stream_argv

    (out / "edge").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    # decode the clip and fill the ground-truth cache once, not N times in parallel
    setup = build_stream(options)
    n_frames = len(setup.frames)
    del setup
    # the token travels in the environment: command lines are readable by any local user
    env = {**os.environ, ENV: token}
    tuner_file = options.tuner.partition(":")[2]  # the edge offers the device's tuner file
    tables = getattr(options.scheme, "tables", None)  # a device's table file: the edge offers
    #                                                    it too
    edge_log = open(out / "edge" / "edge.log", "w")  # noqa: SIM115 (closed below)
    edge = subprocess.Popen(
        [sys.executable, "-m", "stac.emu.edge_main", "serve", "--port", "0",
         "--model", options.model, "--seed", str(options.seed),
         "--threads", str(threads), *(["--tables", tables] if tables else []),
         *(["--tuner-file", tuner_file] if tuner_file else []),
         "--max-devices", str(max(devices, 1)), "--out", str(out / "edge")],
        stdout=subprocess.PIPE, stderr=edge_log, text=True, env=env)
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        address = _wait_for_address(edge)
        for i in range(devices):
            dev_out = out / f"device-{i}"
            dev_out.mkdir(parents=True, exist_ok=True)
            logs.append(open(dev_out / "device.log", "w"))  # noqa: SIM115
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "stac.emu.device_main", "stream", "--edge", address,
                 "--out", str(dev_out), "--device-id", f"device-{i}",
                 "--wait-go", "--threads", str(threads), *stream_argv(options)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[-1], text=True,
                env=env))
        for proc in procs:  # every device connected: start the cameras together
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a device failed before streaming (see {out}/device-*/"
                                   f"device.log); it said {line!r}")
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        total = n_frames * len(procs)
        bar = tqdm(total=total, unit="frame", desc="emulating", disable=not progress,
                   dynamic_ncols=True)
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            done = sum(_frames_written(out / f"device-{i}" / "frames.csv")
                       for i in range(len(procs)))
            bar.update(min(done, total) - bar.n)
        bar.close()
        codes = [p.wait() for p in procs]
        last_lines = [p.stdout.read().strip() for p in procs]
    finally:
        for proc in procs:
            _stop(proc)
        edge_code = _stop(edge)
        edge_log.close()
        for f in logs:
            f.close()
    edge_summary = json.loads((out / "edge" / "edge_summary.json").read_text())
    result = {"devices": [], "edge": edge_summary, "edge_exit": edge_code,
              "wall_s": time.monotonic() - t0, "address": address}
    for i, code in enumerate(codes):
        path = out / f"device-{i}" / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else None
        result["devices"].append({"device_id": f"device-{i}", "exit": code,
                                  "line": last_lines[i], "summary": summary})
    (out / "emulation.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def _wait_for_address(edge: subprocess.Popen) -> str:
    """HOST:PORT from the edge's first stdout line, 'stac-edge listening on HOST:PORT'."""
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(edge.stdout.readline()), daemon=True)
    reader.start()
    reader.join(EDGE_START_TIMEOUT_S)
    line = found[0] if found else ""
    prefix = "stac-edge listening on "
    if not line.startswith(prefix):
        raise RuntimeError(f"the edge did not start (exit {edge.poll()}); see edge/edge.log")
    return line[len(prefix):].strip()


def format_result(result: dict[str, Any]) -> str:
    """A readable table: one line per device, then the edge's load."""
    lines = []
    for d in result["devices"]:
        s = d["summary"]
        if s is None:
            lines.append(f"{d['device_id']}: exit {d['exit']}, no summary")
            continue
        fs = s["frame_stats"]

        def f(x, spec=".3f"):
            return "n/a" if x is None else format(x, spec)

        kps = s["delivered"] / s["video_s"] if s["video_s"] else float("nan")
        lines.append(
            f"{d['device_id']}: {s['frames']} frames, {s['keyframes']} keyframes "
            f"({s['delivered']} delivered, {s['dropped']} dropped, {kps:.2f}/s), delay p50 "
            f"{f(fs['delay_s']['p50'])} s p95 {f(fs['delay_s']['p95'])} s, result age mean "
            f"{f(fs['result_age_s']['mean'])} s p95 {f(fs['result_age_s']['p95'])} s, mIoU "
            f"{f(fs['miou']['mean'])}, outage {s['outage_s']:.2f} s")
    c = result["edge"]["compute"]
    util = c.get("utilisation_active")
    backlog = c.get("backlog_mean_active")
    lines.append(f"edge: {c['jobs']} compute jobs, utilisation while serving "
                 f"{'n/a' if util is None else format(util, '.0%')}, keyframes waiting: mean "
                 f"{'n/a' if backlog is None else format(backlog, '.2f')}, "
                 f"max {c['backlog_max']}")
    return "\n".join(lines)


BEHIND_BACKLOG = 2.0  # keyframes at the edge (one computing + one waiting) on average
BEHIND_DELAY_S = 1.0  # median delay from capture to result


def behind_real_time(result: dict[str, Any]) -> str | None:
    """A warning when the edge did not keep up with the keyframes (a queue built up, results
    shown late), with what to change; None when it kept up."""
    backlog = result["edge"]["compute"].get("backlog_mean_active")
    delays = [d["summary"]["frame_stats"]["delay_s"]["p50"] for d in result["devices"]
              if d["summary"] is not None]
    delay = max((x for x in delays if x is not None), default=None)
    if not ((backlog is not None and backlog > BEHIND_BACKLOG)
            or (delay is not None and delay > BEHIND_DELAY_S)):
        return None
    seen = [f"{backlog:.1f} keyframes at the edge on average" if backlog is not None else "",
            f"median delay {delay:.2f} s" if delay is not None else ""]
    return (f"the edge fell behind real time ({', '.join(x for x in seen if x)}): results "
            "are late and stale; use a smaller --size, a lower --fps, fewer --devices or a "
            "lighter --model")


def main(args: argparse.Namespace) -> int:
    if args.devices < 1:
        print("stac-sim emulate: --devices must be >= 1", file=sys.stderr)
        return 2
    from stac.options import run_options

    try:
        from stac.emu.auth import read_token

        result = emulate(run_options(args, args.scheme_params, overwrite=args.overwrite),
                         devices=args.devices, token=read_token(args.token_file, args.token),
                         threads=_threads(args))
    except (RuntimeError, OSError, ValueError) as exc:
        from stac.results import failed_note

        print(f"stac-sim emulate: {exc}{failed_note(exc)}", file=sys.stderr)
        return 2
    print(format_result(result))
    if (behind := behind_real_time(result)) is not None:
        print(f"stac-sim emulate: warning: {behind}", file=sys.stderr)
    print(f"outputs in {args.out}/ (device-*/, edge/edge_summary.json, emulation.json)")
    return 0 if all(d["exit"] == 0 for d in result["devices"]) else 1
