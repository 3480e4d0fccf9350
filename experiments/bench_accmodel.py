"""Per-inference time of AccMPEG's AccModel (`device.accmodel`, ms, this CPU, one torch
thread) at 480x360 and at the paper's 2048x1040 (the `accmodel` time of the latency
profile), with its MACs. Prints one JSON document.

    python experiments/bench_accmodel.py [--calls 30] [--weights device/weights/accmodel-dabnet.pt]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from device.accmodel import AccModel, pad_frame, to_tensor

SIZES = {"480x360": (480, 360), "2048x1040": (2048, 1040)}


def time_scores(acc: AccModel, width: int, height: int, calls: int) -> dict:
    """Median, p95 and min ms of `acc.scores` on a real-looking frame (after 3 warm-up)."""
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ms = []
    for i in range(calls + 3):
        t0 = time.perf_counter()
        acc.scores(rgb)
        if i >= 3:
            ms.append(1000 * (time.perf_counter() - t0))
    with FlopCounterMode(display=False) as counter:
        acc(pad_frame(to_tensor(rgb)))
    return {"median_ms": statistics.median(ms), "p95_ms": float(np.percentile(ms, 95)),
            "min_ms": min(ms), "calls": calls, "mmacs": counter.get_total_flops() / 2e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--weights", default=None, help="default: the shipped weights")
    args = p.parse_args()
    torch.set_num_threads(1)
    acc = AccModel.load(args.weights)
    load_before = os.getloadavg()
    out = {name: time_scores(acc, w, h, args.calls) for name, (w, h) in SIZES.items()}
    out.update(torch=torch.__version__, threads=1, loadavg_before=load_before,
               loadavg_after=os.getloadavg())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
