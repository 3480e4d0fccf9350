"""The edge and device processes under hostile conditions (issue 13): a flood of connections
up to the edge's descriptor limit, and a frozen edge (SIGSTOP) that the device must notice."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import stop_process

from stac import protocol as P
from stac.emu import streams
from stac.emu.build import hello_config
from stac.schemes import Stream, make_scheme

STREAM = ["--scheme", "jpeg", "--model", "untrained:bisenet", "--size", "64x48", "--seed", "0",
          "--threads", "1"]


def _edge(log: Path, *extra: str, nofile: int | None = None) -> tuple[subprocess.Popen, int]:
    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        [sys.executable, "-m", "stac.emu.edge_main", "serve", "--port", "0",
         "--model", "untrained:bisenet", "--seed", "0", "--threads", "1", *extra],
        stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,  # noqa: SIM115
        preexec_fn=limit)
    line = proc.stdout.readline()
    assert line.startswith("stac-edge listening on 127.0.0.1:"), line
    return proc, int(line.rsplit(":", 1)[1])




async def _flood(port: int, n: int, hold: float) -> int:
    """Open `n` connections that never say anything, hold them; how many opened."""
    opened = []
    for _ in range(n):
        try:
            opened.append(await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2))
        except (OSError, asyncio.TimeoutError):
            pass
    await asyncio.sleep(hold)
    for _, writer in opened:
        writer.close()
    return len(opened)


async def _handshake(port: int) -> P.Message | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    config = hello_config(make_scheme("jpeg"), Stream(source_fps=25.0, frame_size=(64, 48)))
    await streams.write_message(writer, P.Hello("good", "jpeg", config))
    answer = await streams.read_message(reader, timeout=30, idle_timeout=60)
    writer.close()
    return answer


@pytest.mark.slow
def test_edge_survives_a_flood_at_its_descriptor_limit(tmp_path):
    out = tmp_path / "edge"
    edge, port = _edge(tmp_path / "edge.log", "--out", str(out), nofile=96)
    try:
        opened = asyncio.run(_flood(port, 400, hold=5.0))  # over two summary writes
        time.sleep(0.5)
        assert edge.poll() is None, "the edge died under the flood"
        before = (out / "edge_summary.json").stat().st_mtime
        answer = asyncio.run(_handshake(port))
        time.sleep(2.5)
        after = (out / "edge_summary.json").stat().st_mtime
    finally:
        code = stop_process(edge)
    assert opened > 96  # the flood went past the edge's descriptor limit
    assert isinstance(answer, P.Hello), answer  # a device is served after the flood
    assert after > before  # the summary is still written
    assert code == 0
    log = (tmp_path / "edge.log").read_text()
    assert "Traceback" not in log
    assert len(log.splitlines()) < 40, log[-3000:]  # logged once, then counted


@pytest.mark.slow
def test_frozen_edge_is_recorded_as_an_outage_with_its_cause(tmp_path, repo_root):
    edge, port = _edge(tmp_path / "edge.log")
    device = subprocess.Popen(
        [sys.executable, "-m", "stac.emu.device_main", "stream", "--edge", f"127.0.0.1:{port}",
         "--trace", str(repo_root / "traces" / "lte.csv"), "--duration", "10", "--fps", "5",
         "--out", str(tmp_path / "dev"), "--wait-go", "--feedback-timeout", "1.5", *STREAM],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "STAC_CACHE": str(tmp_path / "cache")})
    try:
        assert device.stdout.readline().strip() == "ready"
        device.stdin.write("go\n")
        device.stdin.flush()
        go = time.monotonic()
        time.sleep(3.0)
        edge.send_signal(signal.SIGSTOP)  # frozen: the connection stays up, nothing answers
        frozen = time.monotonic() - go
        time.sleep(5.0)
        edge.send_signal(signal.SIGCONT)
        thawed = time.monotonic() - go
        out, err = device.communicate(timeout=120)
    finally:
        stop_process(device)
        stop_process(edge)
    assert device.returncode == 0, err[-2000:]
    outages = pd.read_csv(tmp_path / "dev" / "outages.csv")
    silent = outages[outages["reason"].str.startswith("edge silent")]
    assert len(silent) == 1, outages
    start, end = silent["start_s"].iloc[0], silent["end_s"].iloc[0]
    assert frozen - 1.0 <= start <= frozen + 1.0, (start, frozen)
    assert thawed - 0.5 <= end <= thawed + 3.0, (end, thawed)
