"""Per-call time of the tuners' `step` (ms, this CPU, one torch thread): the §VI network
(its target: < 1 ms per call, issue 12), `nn-safe` (the network and its guard; not with
--tiny, whose weights predate the costs it needs) and the offline lookup, on the weights and stac
profile shipped for --model (edge/tuners/MODEL.pt, MODEL-stac.csv), or with --tiny on the
mechanics-only ones of tests/data/tuner_tiny. Prints one JSON document.

    python experiments/bench_tuner.py [--calls 2000] [--model dabnet | --tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from edge.profiles import OfflineTuner, read_profiles
from edge.tuner import shipped_file
from edge.tuner_net import NetTuner
from edge.tuner_safe import SafeNetTuner
from stac.protocol import Config, Content
from stac.schemes import DEFAULT_MODEL

TINY = Path(__file__).resolve().parent.parent / "tests" / "data" / "tuner_tiny"


def time_calls(tuner, calls: int) -> dict:
    """Median and p95 ms of `tuner.step` over `calls` varied inputs (after 50 warm-up)."""
    rng = np.random.default_rng(0)
    config = Config.of({"B": 4.0, "fps": 5.0})
    ms = []
    for i in range(calls + 50):
        bw, c, d = rng.uniform(5, 100), rng.uniform(5e3, 2e4), rng.uniform(2e4, 1.5e5)
        t0 = time.perf_counter()
        tuner.step(i, 20.0, bw, config, Content(second=i, c=c, d=d))
        if i >= 50:
            ms.append(1000 * (time.perf_counter() - t0))
    return {"median_ms": statistics.median(ms), "p95_ms": float(np.percentile(ms, 95)),
            "calls": calls}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="whose shipped tuners (edge/tuners/; default %(default)s)")
    p.add_argument("--tiny", action="store_true", help="the mechanics-only test files")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.tiny:
        weights, profiles = TINY / "nn.pt", TINY / "profiles.csv"
    else:
        weights = shipped_file("nn", args.model)
        profiles = shipped_file("offline", args.model, "stac")
    net = NetTuner.load(weights)
    offline = OfflineTuner(read_profiles(profiles))
    out = {"nn": {**time_calls(net, args.calls), "kflops": net.card["kflops"]},
           "offline": {**time_calls(offline, args.calls), "seconds": len(offline.groups)},
           **({} if args.tiny else {"nn-safe": time_calls(SafeNetTuner(net), args.calls)}),
           "weights": str(weights), "profiles": str(profiles),
           "torch": torch.__version__, "threads": 1, "loadavg": os.getloadavg()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
