"""Benchmark of the loopback emulator (issue 6); prints JSON.

A. One device at the source rate of the default clip (every frame a keyframe), `h264`,
   over a real 3G trace (Riiser et al., from the data root: `stac-sim data list`) that the stream
   sometimes exceeds: the largest 1 s window of bytes the paced uplink put on the socket
   against the trace's capacity, and end-to-end delay against the simulator under the
   `measured` profile on the same clip, trace, scheme and seed.
B. 1, 2, 4, 8 devices on one edge: keyframes per second per device the edge answered,
   compute utilisation and queue length of the edge, delay percentiles over all frames.

    python experiments/bench_emu.py [--size 128x54] [--devices 1,2,4,8] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stac.data import data_root

REPO = Path(__file__).resolve().parent.parent
SHARED = data_root()
TRACE_3G = SHARED / "traces" / "3g-norway" / "norway_tram_48"  # mean 692 kbps, min 220


def _namespace(**kw) -> argparse.Namespace:
    base = dict(video="default", scheme="h264", model="untrained:bisenet", duration=10.0,
                fps=25.0, size=(128, 54), qp=8, quality=50, seed=0, delay_ms=20.0,
                source_fps=None, B=math.nan, downlink_delay_ms=None, downlink_kbps=None,
                no_cache=False, threads=1, schedule={}, token="", devices=1)
    base.update(kw)
    return argparse.Namespace(**base)


def _options(ns: argparse.Namespace, out: Path, profile: str):
    from stac.sim.runner import run_options

    knob = {"h264": {"qp": ns.qp}, "jpeg": {"quality": ns.quality}}.get(ns.scheme, {})
    return run_options(dict(trace=str(ns.trace), out=str(out), video=ns.video,
                            scheme=ns.scheme, model=ns.model, duration=ns.duration, fps=ns.fps,
                            size=ns.size, seed=ns.seed, delay_ms=ns.delay_ms, profile=profile,
                            tuner="fixed", **knob))


def _pct(values, q) -> float | None:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(np.percentile(v, q)) if v.size else None


def pacing_and_parity(work: Path, ns: argparse.Namespace) -> dict:
    """Part A: one device at the source rate; the emulator against the simulator."""
    from stac.commands.emulate import emulate
    from stac.sim.runner import run
    from stac.traces import import_trace, save_trace

    trace_csv = save_trace(import_trace(TRACE_3G, "cooked"), work / "norway_tram_48.csv",
                           comment="3G Norway tram 48 (Riiser et al., MMSys 2013)")
    ns.trace = trace_csv
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each emulator process
    try:
        warm = _options(ns, work / "warm", "measured")
        run(dataclasses.replace(warm, duration=0.5))  # one-time costs, paid as the emu does
        sim = run(_options(ns, work / "sim", "measured"))
    finally:
        torch.set_num_threads(threads)
    ns.out = work / "emu"
    result = emulate(_options(ns, ns.out, "measured"), progress=False)
    emu = result["devices"][0]["summary"]
    a = pd.read_csv(work / "sim" / "frames.csv")
    b = pd.read_csv(work / "emu" / "device-0" / "frames.csv")
    ka, kb = a[a["keyframe"] == 1], b[b["keyframe"] == 1]
    same = ka["frame"].tolist() == kb["frame"].tolist()
    up = emu["uplink_released"]
    d_sim, d_emu = a["delay_s"].mean(), b["delay_s"].mean()
    return {
        "trace": TRACE_3G.name, "trace_mean_kbps": float(sim["second_stats"]["bandwidth_kbps"]
                                                         ["mean"]),
        "bitrate_mean_kbps": {"sim": sim["second_stats"]["bitrate_kbps"]["mean"],
                              "emu": emu["second_stats"]["bitrate_kbps"]["mean"]},
        "keyframes": {"sim": int(len(ka)), "emu": int(len(kb)), "same_frames": same,
                      "identical_bytes": same and ka["bytes"].tolist() == kb["bytes"].tolist()},
        "max_1s_window_over_trace": up["max_window_ratio"],
        "socket_write_late_p99_s": up["late_p99_s"], "socket_write_late_max_s": up["late_max_s"],
        "delay_s": {"sim_mean": d_sim, "emu_mean": d_emu,
                    "sim_p50": _pct(a["delay_s"], 50), "emu_p50": _pct(b["delay_s"], 50),
                    "sim_p95": _pct(a["delay_s"], 95), "emu_p95": _pct(b["delay_s"], 95),
                    "emu_over_sim_mean": d_emu / d_sim if d_sim else None},
        "dropped": {"sim": sim["dropped"], "emu": emu["dropped"]},
        "miou_mean": {"sim": sim["frame_stats"]["miou"]["mean"],
                      "emu": emu["frame_stats"]["miou"]["mean"]},
        "edge": result["edge"]["compute"],
    }


def scaling(work: Path, ns: argparse.Namespace, counts: list[int]) -> list[dict]:
    """Part B: N devices on one edge."""
    from stac.commands.emulate import emulate

    rows = []
    for n in counts:
        ns.out, ns.devices = work / f"scale-{n}", n
        t0 = time.monotonic()
        result = emulate(_options(ns, ns.out, "measured"), devices=n, progress=False)
        delays, answered, kps = [], [], []
        for d in result["devices"]:
            s = d["summary"]
            frames = pd.read_csv(ns.out / d["device_id"] / "frames.csv")
            delays.extend(frames["delay_s"].dropna().tolist())
            kps.append(s["keyframes"] / s["video_s"])
        for s in result["edge"]["devices"]:
            answered.append(s["feedbacks"] / ns.duration)
        c = result["edge"]["compute"]
        rows.append({
            "devices": n, "exit_codes": [d["exit"] for d in result["devices"]],
            "keyframes_sent_per_s_per_device": float(np.mean(kps)),
            "keyframes_answered_per_s_per_device": float(np.mean(answered)),
            "edge_utilisation": c["utilisation_active"],
            "edge_backlog_mean": c["backlog_mean_active"], "edge_backlog_max": c["backlog_max"],
            "edge_worker_queue_max": c["queue_max"],
            "delay_p50_s": _pct(delays, 50), "delay_p95_s": _pct(delays, 95),
            "delay_p99_s": _pct(delays, 99), "wall_s": time.monotonic() - t0})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="128x54", help="frame size WxH (default 128x54)")
    p.add_argument("--model", default="untrained:bisenet")
    p.add_argument("--devices", default="1,2,4,8")
    p.add_argument("--scale-fps", type=float, default=10.0, help="keyframe rate in part B")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--skip-a", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="keep the runs here")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_emu_"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"machine": {"cpus": torch.get_num_threads(), "load": _load()},
              "size": [w, h], "model": args.model}
    if not args.skip_a:
        report["pacing_and_parity"] = pacing_and_parity(
            work, _namespace(size=(w, h), model=args.model, duration=args.duration))
    report["scaling"] = scaling(
        work, _namespace(size=(w, h), model=args.model, fps=args.scale_fps, qp=30,
                         duration=args.duration, trace=REPO / "traces" / "lte.csv"),
        [int(n) for n in args.devices.split(",")])
    report["machine"]["load_after"] = _load()
    print(json.dumps(report, indent=2, default=str))
    return 0


def _load() -> list[float]:
    import os

    return [round(x, 2) for x in os.getloadavg()]


if __name__ == "__main__":
    sys.exit(main())
