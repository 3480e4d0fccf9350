"""Per-frame time of shipped models measured interleaved, frame by frame (issue 14's budget).

Timing two models one after the other on a shared machine compares different loads; taking
turns frame by frame puts both under the same load, so their ratio is what a budget such as
"within 1.5x of bisenet" can be checked against. CPU time is the primary number.

    OMP_NUM_THREADS=1 python experiments/bench_model_ratio.py --models bisenet dabnet
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs=2, default=["bisenet", "dabnet"],
                        help="reference model, then the model timed against it")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per model")
    parser.add_argument("--size", default="360x480", help="HxW")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from edge.models.registry import load_model

    h, w = map(int, args.size.split("x"))
    models = {name: load_model(name).eval() for name in args.models}
    rng = np.random.default_rng(0)
    frames = [torch.from_numpy(rng.random((1, 3, h, w), dtype=np.float32)) for _ in range(3)]
    times: dict[str, dict[str, list[float]]] = {n: {"cpu": [], "wall": []} for n in models}
    with torch.no_grad():
        for model in models.values():  # warm-up
            model(frames[0])
        for i in range(args.frames):
            for name, model in models.items():
                c, t = time.process_time(), time.perf_counter()
                model(frames[i % len(frames)])
                times[name]["cpu"].append(1e3 * (time.process_time() - c))
                times[name]["wall"].append(1e3 * (time.perf_counter() - t))
    ref, other = args.models
    med = {n: {k: float(np.median(v)) for k, v in t.items()} for n, t in times.items()}
    print(json.dumps({"size": [h, w], "frames": args.frames, "torch_threads": 1,
                      "ms_per_frame_median": {n: {k: round(v, 1) for k, v in m.items()}
                                              for n, m in med.items()},
                      "ratio_cpu": round(med[other]["cpu"] / med[ref]["cpu"], 3),
                      "ratio_wall": round(med[other]["wall"] / med[ref]["wall"], 3),
                      "load_average_1min": round(os.getloadavg()[0], 2)}, indent=2))


if __name__ == "__main__":
    main()
