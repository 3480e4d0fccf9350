"""The device process against a real edge process: kill and restart the edge mid-stream
(issue 6, reliability), and a device that is refused for a wrong token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import stop_process

STREAM = ["--scheme", "jpeg", "--model", "untrained:bisenet", "--size", "64x48", "--seed", "0",
          "--threads", "1"]


def _edge(port: int, *extra: str) -> tuple[subprocess.Popen, int]:
    """Start `stac-edge serve` on loopback; returns it and its port once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stac.emu.edge_main", "serve", "--port", str(port),
         "--model", "untrained:bisenet", "--seed", "0", "--threads", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("stac-edge listening on 127.0.0.1:"), line
    return proc, int(line.rsplit(":", 1)[1])


def _device(port: int, out: Path, trace: Path, duration: float, *extra: str,
            cache: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stac.emu.device_main", "stream", "--edge", f"127.0.0.1:{port}",
         "--trace", str(trace), "--duration", str(duration), "--out", str(out), *STREAM,
         *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "STAC_CACHE": str(cache)})




@pytest.mark.slow
def test_edge_killed_and_restarted_mid_stream(tmp_path, repo_root, dataset):
    # CamVid val as a 1 fps camera: long enough (101 s) for an edge restart on a busy machine
    duration, interval = 30.0, 1.0
    video = dataset("camvid") / "val"  # skips without data: before a process is started
    edge, port = _edge(0)
    device = _device(port, tmp_path / "dev", repo_root / "traces" / "lte.csv", duration,
                     "--wait-go", "--video", str(video), "--fps", "1",
                     cache=tmp_path / "cache")
    try:
        assert device.stdout.readline().strip() == "ready"
        device.stdin.write("go\n")
        device.stdin.flush()
        go = time.monotonic()
        time.sleep(4.0)
        edge.kill()  # SIGKILL: no goodbye, sockets reset
        edge.wait()
        killed = time.monotonic() - go
        time.sleep(1.0)
        edge, _ = _edge(port)  # same port: the device reconnects by itself
        restarted = time.monotonic() - go
        assert restarted < duration - 8, "the edge took too long to restart on this machine"
        out, err = device.communicate(timeout=duration + 120)
    finally:
        stop_process(device)
        stop_process(edge)
    assert device.returncode == 0, err[-2000:]
    frames = pd.read_csv(tmp_path / "dev" / "frames.csv")
    n = int(duration / interval)
    assert frames["frame"].tolist() == list(range(n))  # every row, in order, none truncated
    assert set(frames["keyframe"]) <= {0, 1} and frames["t_capture"].is_monotonic_increasing
    summary = json.loads((tmp_path / "dev" / "summary.json").read_text())
    assert summary["frames"] == n
    (outage,) = summary["outages"]  # exactly one outage, where the edge was down
    assert killed - 1.0 <= outage["start_s"] <= killed + 1.0
    assert outage["end_s"] >= restarted - 0.5 and outage["end_s"] <= duration
    outages = pd.read_csv(tmp_path / "dev" / "outages.csv")
    assert len(outages) == 1
    assert abs(outages["start_s"][0] - outage["start_s"]) < 1e-5
    kf = frames[frames["keyframe"] == 1]
    during = kf[(kf["t_capture"] > outage["start_s"] + 0.1)
                & (kf["t_capture"] < outage["end_s"] - 0.1)]
    assert len(during) > 0 and during["dropped"].all()  # nothing to send them to
    assert during["t_arrived"].isna().all()
    # results kept coming while the edge was away (the last one, as is) ...
    shown = frames[(frames["t_capture"] > outage["start_s"] + 1.0)
                   & (frames["t_capture"] < outage["end_s"])]
    assert shown["pa"].notna().all()
    # ... and after the reconnection the device shows results of keyframes sent after it
    result_index = frames["frame"] - frames["result_age_frames"]
    assert (result_index * interval > outage["end_s"]).any()
    assert frames.loc[kf.index[kf["t_capture"] > outage["end_s"] + 0.5], "t_arrived"].notna().any()


@pytest.mark.slow
def test_device_with_wrong_token_is_refused(tmp_path, repo_root):
    edge, port = _edge(0, "--token", "right", "--out", str(tmp_path / "edge"))
    try:
        device = _device(port, tmp_path / "dev", repo_root / "traces" / "lte.csv", 2.0,
                         "--token", "wrong", cache=tmp_path / "cache")
        out, err = device.communicate(timeout=180)
    finally:
        stop_process(edge)
    assert device.returncode == 3
    assert "UNAUTHORIZED" in err
    summary = json.loads((tmp_path / "edge" / "edge_summary.json").read_text())
    assert summary["devices"] == [] and summary["compute"]["jobs"] == 0
    assert summary["refused"] == {"UNAUTHORIZED": 1}
