"""Benchmark of the experiment library (issue 11 "Numbers"): 8 short runs one after another
against `stac.experiment.sweep` on the local process pool (2 workers) and on Ray (2 CPUs).
Prints JSON.

    nice -n 19 python experiments/bench_sweep.py [--duration 6] [--size 320x136] [--workers 2]

Each mode runs in a fresh Python process, timed from outside, as a user runs it:
`sequential` is the 8 runs with the plain runner (`stac.sim.runner.run`) in one process
with one shared model (how the figure scripts ran before the library); `local` and `ray`
are one `sweep(...)` call (Ray's start included; also reported alone). The ground-truth
cache is filled first, untimed, so every mode finds it warm.
Speed-up = sequential wall / sweep wall. Overhead per run = (workers x wall - sum of the
runs' own `run()` walls, from their summaries) / runs: every worker-second not spent
simulating (process start, imports, idle tail, the library's work around a run);
`in_worker_s` is only the latter (row wall_s - summary wall_s, averaged).
Targets (issue 11): speed-up >= 1.6 with 2 workers, library overhead < 1 s per run.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEMES = (("h264", "qp", [24, 30, 36, 42]), ("jpeg", "quality", [20, 40, 60, 80]))


def spec(args) -> dict:
    grids = [{"scheme": s, knob: values} for s, knob, values in SCHEMES]
    return {"base": {"video": "default", "trace": str(REPO / "traces" / "lte.csv"),
                     "duration": args.duration, "size": args.size, "fps": 5,
                     "model": args.model, "tuner": "fixed"},
            "grid": grids}


def sequential(args, out: Path, runs: list[dict] | None = None) -> dict:
    """The runs one after another with the plain runner in this process, one thread."""
    import cv2
    import torch

    from stac.experiment import expand, load_spec
    from stac.sim.runner import resolve_model, run, run_options

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    runs = runs if runs is not None else expand(load_spec(spec(args)))
    model = resolve_model(args.model)
    walls = []
    for i, params in enumerate(runs):
        w, h = params["size"].split("x")
        options = run_options({**params, "size": (int(w), int(h)), "out": str(out / f"r{i}")})
        walls.append(run(options, model=model)["wall_s"])
    return {"runs": len(runs), "workers": 1, "run_walls_s": walls}


def library(args, out: Path, backend: str) -> dict:
    """One sweep call; the runs' own walls from their summaries."""
    import pandas as pd

    from stac.experiment import load_run, sweep

    result = {}
    if backend == "ray":
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"worker_process_setup_hook": "stac.experiment.preload.setup"})
        result["ray_init_s"] = time.perf_counter() - t
    try:
        table = sweep(spec(args), out, backend=backend, workers=args.workers, progress=False)
    finally:
        if backend == "ray":
            ray.shutdown()
    if not (table["status"] == "ok").all():
        raise RuntimeError(f"failed runs: {table['error'].tolist()}")
    inner = [load_run(out, rid).summary["wall_s"] for rid in table["run_id"]]
    table.drop(columns="wall_s").to_csv(out / "table_without_wall.csv", index=False)
    result.update({"runs": len(table), "workers": args.workers, "run_walls_s": inner,
                   "in_worker_s": float((table["wall_s"] - pd.Series(inner)).mean())})
    return result


def timed(args, mode: str, out: Path) -> dict:
    """Run one mode in a fresh process; its JSON plus the wall measured from outside."""
    cmd = [sys.executable, __file__, "--mode", mode, "--out", str(out), "--duration",
           str(args.duration), "--size", args.size, "--model", args.model, "--workers",
           str(args.workers)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    result["overhead_per_run_s"] = (result["workers"] * wall - sum(result["run_walls_s"])) \
        / result["runs"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=6.0, help="seconds of video per run")
    p.add_argument("--size", default="320x136", help="frame size WxH")
    p.add_argument("--model", default="bisenet")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--mode", choices=("warmup", "sequential", "local", "ray"), default=None,
                   help=argparse.SUPPRESS)  # one mode in this process (the bench's child)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode is not None:
        if args.mode == "warmup":
            from stac.experiment import expand, load_spec

            result = sequential(args, args.out, expand(load_spec(spec(args)))[:1])
        elif args.mode == "sequential":
            result = sequential(args, args.out)
        else:
            result = library(args, args.out, args.mode)
        print(json.dumps(result))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep-"))
    os.environ.setdefault("STAC_CACHE", str(tmp / "cache"))  # children inherit it
    load_before = os.getloadavg()
    timed(args, "warmup", tmp / "warmup")  # fills the ground-truth cache
    modes = ["sequential", "local"] + ([] if args.no_ray else ["ray"])
    result = {m: timed(args, m, tmp / m) for m in modes}
    seq = result["sequential"]["wall_s"]
    summary = {"runs": result["sequential"]["runs"], "duration_s": args.duration,
               "size": args.size, "model": args.model, "workers": args.workers,
               "speedup_local": seq / result["local"]["wall_s"]}
    if "ray" in result:
        summary["speedup_ray"] = seq / result["ray"]["wall_s"]
        summary["speedup_ray_without_init"] = seq / (result["ray"]["wall_s"]
                                                     - result["ray"]["ray_init_s"])
        summary["tables_identical"] = (tmp / "local" / "table_without_wall.csv").read_text() \
            == (tmp / "ray" / "table_without_wall.csv").read_text()
    for m in modes:
        result[m]["run_walls_s"] = [round(x, 2) for x in result[m]["run_walls_s"]]
    summary.update(result)
    summary["machine"] = {"cpus": os.cpu_count(), "load_before": load_before,
                          "load_after": os.getloadavg(), "platform": platform.platform()}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
