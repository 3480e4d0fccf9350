"""Benchmark (issue 15): wall time of each stage of a STAC keyframe, and of whole runs.

Device (480x360, the default clip resized, keyframes at 10 fps of 25, levels fed back by the
real edge): DIS flow, propagation of labels and levels (§V-B), Eq. 7 residual levels, the
scratch intra encode at l' and the real encode (§V-C); `keyframe_path_ms` is the whole
keyframe `on_frame` less flow and label propagation (the part the paper's Table II budgets
as "integration with predictive coding"). Edge (per shipped model): decode, forward with
graph, backward to the DCT coefficients, Algorithm 1. Whole runs: `stac --B 4` and `h264`
on the default clip (10 s, `--fps 10`, traces/lte.csv, one torch thread, warm ground-truth
cache) as x real time, and `stac-sim --help` in a fresh interpreter. Prints one JSON object.

    python experiments/bench_stac_keyframe.py [--models bisenet] [--frames 51] [--no-runs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import device.stac_agent as stac_agent  # noqa: E402
from edge.models.registry import load_model  # noqa: E402
from edge.stac_agent import StacEdge  # noqa: E402
from edge.tables import tables_for  # noqa: E402
from stac.codec.encoder import Encoder  # noqa: E402
from stac.frames import open_video  # noqa: E402
from stac.protocol import Config  # noqa: E402


class Stopwatch:
    """Milliseconds per call of wrapped callables, by stage name: wall time (`ms`) and this
    process's CPU time (`cpu`; on a machine shared with other jobs it moves far less than
    wall time, and with one thread it is the wall time of a quiet machine)."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.cpu: dict[str, list[float]] = defaultdict(list)

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms[name].append(1e3 * (time.perf_counter() - t0))
                self.cpu[name].append(1e3 * (time.process_time() - c0))
        return timed

    @contextmanager
    def patch(self, owner, attr: str, name: str):
        """Time `owner.attr` (a module function, a class method or an instance method)."""
        original = getattr(owner, attr)
        setattr(owner, attr, self.wrap(name, original))
        try:
            yield
        finally:
            setattr(owner, attr, original)


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 2) if values else None


def _frames(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    from stac.frames import default_clip_path

    return [f.rgb for f in open_video(default_clip_path(), size=size, max_frames=n)]


def device_and_edge(model_name: str, frames: list[np.ndarray], B: float) -> dict:
    """Run StacDevice and StacEdge on `frames` (feedback returned at once) and time stages."""
    h, w = frames[0].shape[:2]
    model = load_model(model_name)
    tables = tables_for(model, None).table_set()
    config = Config.of({"B": B, "fps": 10.0})
    dev = stac_agent.StacDevice(tables, config, source_fps=25.0, frame_size=(w, h))
    edge = StacEdge(model, tables, config)
    watch = Stopwatch()
    scratch, real = dev._scratch, dev.encoder
    # `encode` calls `encode_planes`: wrapping the latter times both entry points
    scratch.encode_planes = watch.wrap("scratch_intra_encode", scratch.encode_planes)
    real.encode_planes = watch.wrap("real_encode", real.encode_planes)
    if hasattr(real, "inter_residual_coeffs"):
        real.inter_residual_coeffs = watch.wrap("residual_prediction", real.inter_residual_coeffs)
    dev.cache.push = watch.wrap("flow", dev.cache.push)
    edge.decoder.decode_planes = watch.wrap("decode", edge.decoder.decode_planes)
    model.step = watch.wrap("forward", model.step)
    import edge.stac_agent as edge_agent

    key_ms, key_cpu, other_ms, edge_ms, edge_cpu = [], [], [], [], []
    with (watch.patch(stac_agent, "residual_levels", "eq7_residual_levels"),
          watch.patch(stac_agent, "propagate_levels", "propagate_levels"),
          watch.patch(stac_agent, "propagate_labels", "propagate_labels"),
          watch.patch(edge_agent, "coefficient_gradients", "forward_and_backward"),
          watch.patch(edge_agent, "select_levels", "algorithm1")):
        for i, frame in enumerate(frames):
            flow_before = len(watch.ms["flow"])
            labels_before = len(watch.ms["propagate_labels"])
            t0, c0 = time.perf_counter(), time.process_time()
            out = dev.on_frame(i, i / 25.0, frame)
            dt, dc = 1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)
            if out.keyframe is None:
                other_ms.append(dt)
                continue
            overhead = sum(watch.ms["flow"][flow_before:])
            overhead += sum(watch.ms["propagate_labels"][labels_before:])
            overhead_cpu = sum(watch.cpu["flow"][flow_before:])
            overhead_cpu += sum(watch.cpu["propagate_labels"][labels_before:])
            t0, c0 = time.perf_counter(), time.process_time()
            result = edge.on_keyframe(out.keyframe)
            edge_ms.append(1e3 * (time.perf_counter() - t0))
            edge_cpu.append(1e3 * (time.process_time() - c0))
            dev.on_feedback(result.feedback)
            key_ms.append((dt, dt - overhead))
            key_cpu.append(dc - overhead_cpu)
    # the first keyframe is intra (and pays any compilation): keep the inter keyframes only
    skip = 1
    stages = {k: v[skip:] if k not in ("flow", "propagate_labels") else v
              for k, v in watch.ms.items()}
    backward = [fb - f for fb, f in zip(stages["forward_and_backward"], stages["forward"],
                                        strict=True)]
    keys = key_ms[skip:]
    cpu = {k: v[skip:] if k not in ("flow", "propagate_labels") else v
           for k, v in watch.cpu.items()}
    return {
        "keyframes_timed": len(keys),
        "device_ms": {
            "flow": _median(stages["flow"]),
            "propagate_labels": _median(stages["propagate_labels"]),
            "propagate_levels": _median(stages["propagate_levels"]),
            "eq7_residual_levels": _median(stages["eq7_residual_levels"]),
            "residual_prediction": _median(stages.get("residual_prediction", [])),
            "scratch_intra_encode": _median(stages["scratch_intra_encode"]),
            "real_encode": _median(stages["real_encode"]),
            "keyframe_on_frame": _median([k for k, _ in keys]),
            "keyframe_path": _median([p for _, p in keys]),
            "other_frame_on_frame": _median(other_ms),
        },
        "edge_ms": {
            "decode": _median(stages["decode"]),
            "forward": _median(stages["forward"]),
            "backward": _median(backward),
            "forward_and_backward": _median(stages["forward_and_backward"]),
            "algorithm1": _median(stages["algorithm1"]),
            "on_keyframe": _median(edge_ms[skip:]),
        },
        "cpu_ms": {  # the same stages in CPU time of this process (medians)
            "eq7_residual_levels": _median(cpu["eq7_residual_levels"]),
            "residual_prediction": _median(cpu.get("residual_prediction", [])),
            "scratch_intra_encode": _median(cpu["scratch_intra_encode"]),
            "real_encode": _median(cpu["real_encode"]),
            "keyframe_path": _median(key_cpu[skip:]),
            "edge_forward": _median(cpu["forward"]),
            "edge_backward": _median([fb - f for fb, f in zip(cpu["forward_and_backward"],
                                                              cpu["forward"], strict=True)]),
            "edge_on_keyframe": _median(edge_cpu[skip:]),
        },
    }


def whole_run(scheme: str, out: Path, duration: float) -> dict:
    from stac.sim.runner import RunOptions, run

    extra = {"B": 4.0} if scheme == "stac" else {}
    t0, c0 = time.perf_counter(), time.process_time()
    summary = run(RunOptions(trace=str(REPO / "traces" / "lte.csv"), out=str(out),
                             scheme=scheme, duration=duration, fps=10.0, tuner="fixed",
                             **extra))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "video_s": summary["video_s"],
            "x_real_time": round(summary["video_s"] / wall, 3),
            "x_real_time_cpu": round(summary["video_s"] / cpu, 3),
            "keyframes": summary["keyframes"], "gt_cache": summary["gt_cache"]}


def help_seconds() -> float:
    """Wall seconds of `python -m stac.cli --help` in a fresh interpreter (best of 3)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stac.cli", "--help"], env=env, check=True,
                       capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return round(best, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["bisenet"])
    ap.add_argument("--frames", type=int, default=51, help="frames of the clip at 480x360")
    ap.add_argument("--B", type=float, default=4.0)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of the whole runs")
    ap.add_argument("--no-runs", action="store_true", help="skip the whole runs")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"benchmark": "stac_keyframe", "resolution": "480x360",
              "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "python": platform.python_version(), "load_avg_before": os.getloadavg()}
    frames = _frames(args.frames, (480, 360))
    Encoder(480, 360).encode(frames[0], 26)  # numba kernels compiled / loaded, not timed
    result["stages"] = {name: device_and_edge(name, frames, args.B) for name in args.models}
    if not args.no_runs:
        with tempfile.TemporaryDirectory() as tmp:
            result["runs"] = {}
            for scheme in ("h264", "h264", "stac"):  # the first h264 also warms the gt cache
                result["runs"][scheme] = whole_run(scheme, Path(tmp) / scheme, args.duration)
    result["help_s"] = help_seconds()
    result["load_avg_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
