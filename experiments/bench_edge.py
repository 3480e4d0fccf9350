"""Edge step of STAC (§IV-B, §VIII-F): decode + inference + DCT gradients + Algorithm 1.

Encodes a few frames of a real clip with the codec at 480x360, then times each stage of the
edge's per-keyframe work for each model (weights do not change the cost; untrained models
are used when no checkpoint is shipped). Prints JSON, one object per model.

    python experiments/bench_edge.py [--models bisenet drn_d_22] [--frames 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from edge.gradients import dct_gradients
from edge.models.registry import ModelError, build_model, load_model
from edge.selection import select_levels
from stac.codec.decoder import Decoder
from stac.codec.encoder import Encoder
from stac.codec.quant import default_tables
from stac.data import data_root
from stac.frames import open_video

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = data_root() / "videos" / "solidWhiteRight.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--models", nargs="+", default=["bisenet", "drn_d_22"])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--B", type=float, default=0.01)
    args = parser.parse_args()

    frames = [f.rgb for f in open_video(args.video, size=(args.width, args.height),
                                        max_frames=args.frames + 1)]
    tables = default_tables()
    encoder = Encoder(args.width, args.height, tables=tables)
    encoder.encode(frames[0], 26)  # warm the numba kernels
    encoder.reset()
    payloads = [encoder.encode(f, 26).data for f in frames[1:]]
    for name in args.models:
        try:
            model, trained = load_model(name), True
        except ModelError:
            model, trained = build_model(name).eval(), False
        decoder = Decoder(tables)
        for payload in payloads:  # warm-up, not timed; the decoder needs the whole chain
            decoder.decode(payload)
        decoder.reset()
        dct_gradients(model, frames[1])  # warm-up
        times = {"decode": [], "inference_only": [], "inference_and_gradients": [],
                 "selection": []}
        for payload in payloads:
            t0 = time.perf_counter()
            rgb = decoder.decode(payload)
            t1 = time.perf_counter()
            with torch.inference_mode():
                x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
                model.step(x, model.initial_state())
            t2 = time.perf_counter()
            grads, _ = dct_gradients(model, rgb)
            t3 = time.perf_counter()
            select_levels(grads.planes, tables.steps, args.B, args.height, args.width)
            t4 = time.perf_counter()
            times["decode"].append(t1 - t0)
            times["inference_only"].append(t2 - t1)
            times["inference_and_gradients"].append(t3 - t2)
            times["selection"].append(t4 - t3)
        ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        print(json.dumps({
            "benchmark": "edge_step", "model": name, "trained": trained,
            "resolution": f"{args.width}x{args.height}", "keyframes": len(payloads),
            **{f"{k}_ms": v for k, v in ms.items()},
            "edge_step_ms": ms["decode"] + ms["inference_and_gradients"] + ms["selection"],
            "device": "cpu", "torch_threads": torch.get_num_threads(),
            "load_avg_1min": os.getloadavg()[0],
        }))


if __name__ == "__main__":
    main()
