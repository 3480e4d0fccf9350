"""Benchmark: simulated seconds per wall-clock second of `stac-sim run` (h264, default clip).

Runs the h264 scheme on the default clip (bikes.mp4, 640x272, 25 fps) over traces/lte.csv
twice: with a cold ground-truth cache (the model also segments every raw frame) and with a
warm one (only keyframes are segmented). Prints one JSON object. Speed depends on the
architecture, not the weights, so `--model untrained:NAME` measures a model whose
checkpoint is not shipped yet.

    python experiments/bench_sim.py [--model NAME|PATH|untrained:NAME] [--duration 10]
                                    [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge.models.registry import resolve_model  # noqa: E402
from stac.schemes import DEFAULT_MODEL  # noqa: E402
from stac.sim.runner import run, run_options  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--profile", default="nuc7i5-t4")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = resolve_model(args.model)
    result = {"scheme": "h264", "video": "default", "trace": "traces/lte.csv",
              "model": args.model, "profile": args.profile, "fps": args.fps,
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_avg_1m_before": os.getloadavg()[0], "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["STAC_CACHE"] = str(Path(tmp) / "cache")
        for label in ("cold_gt_cache", "warm_gt_cache"):
            t0 = time.perf_counter()
            summary = run(run_options(dict(trace=str(REPO / "traces" / "lte.csv"),
                                     out=str(Path(tmp) / label), scheme="h264",
                                     duration=args.duration, fps=args.fps,
                                     profile=args.profile, model=args.model,
                                     tuner="fixed")), model=model)
            wall = time.perf_counter() - t0
            result[label] = {
                "video_s": summary["video_s"], "wall_s": round(wall, 3),
                "sim_s_per_wall_s": round(summary["video_s"] / wall, 4),
                "frames": summary["frames"], "keyframes": summary["keyframes"],
                "frames_per_wall_s": round(summary["frames"] / wall, 2),
            }
    result["load_avg_1m_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
