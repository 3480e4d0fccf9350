"""Side measurements of `stac-plus`'s components in the loop (issue 16), printed as JSON.

    python experiments/stac_plus_components.py [--video default] [--size 320x136]
        [--duration 4] [--fps 5] [--B 1.5] [--delay 2]

Device and edge of `stac-plus` run in lockstep on one clip with the shipped model (each
keyframe's feedback reaches the device `--delay` frames later). Per keyframe:
- the bytes of the fed-back level map as `stac-plus` sends it (delta message) and as the
  paper's PNG map of the same levels;
- level agreement (in-loop Fig. 9): the share of regions whose l' (what the device coded
  with) equals the edge's fresh levels for that keyframe, and the mean |l' - fresh|, with
  confidence on and off;
- the edge's time in the allocation against its whole keyframe step (wall clock, this host).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from edge.plus_agent import PlusEdge
from stac.codec.labels import encode_labels
from stac.frames import open_source
from stac.schemes import DEFAULT_MODEL, Stream, make_scheme
from stac.sim.runner import resolve_model


class TimedEdge(PlusEdge):
    """`PlusEdge` that keeps the wall time of its allocation step."""

    def select(self, grads, coeffs, height, width):
        t0 = time.perf_counter()
        out = super().select(grads, coeffs, height, width)
        self.select_s.append(time.perf_counter() - t0)
        return out


def run(args, model, confidence: int) -> dict:
    import torch

    torch.manual_seed(0)
    frames = [f.rgb for f in open_source(args.video, size=args.size)
              if f.t < args.duration - 1e-9]
    h, w = frames[0].shape[:2]
    scheme = make_scheme("stac-plus", {"B": args.B, "fps": args.fps, "confidence": confidence})
    built = scheme.build(Stream(source_fps=25.0, frame_size=(w, h)), model)
    edge = built.edge
    edge.__class__ = TimedEdge
    edge.select_s = []
    device = built.device
    pending, delta, png, agree, dev, step_s = {}, [], [], [], [], []
    for i, frame in enumerate(frames):
        if i in pending:
            device.on_feedback(pending.pop(i))
        out = device.on_frame(i, i / 25.0, frame)
        if out.keyframe is None:
            continue
        t0 = time.perf_counter()
        feedback = edge.on_keyframe(out.keyframe).feedback
        step_s.append(time.perf_counter() - t0)
        fresh = edge.last_levels
        delta.append(len(feedback.levels))
        png.append(len(encode_labels(fresh.astype(np.uint8))))
        if len(device.keyframes) > 1:  # the first keyframe has no fed-back levels
            lp = device.keyframes[-1].levels_prime
            agree.append(float((lp == fresh).mean()))
            dev.append(float(np.abs(lp - fresh).mean()))
        pending[i + args.delay] = feedback
    return {"keyframes": len(delta), "levelmap_bytes_delta": float(np.mean(delta)),
            "levelmap_bytes_png": float(np.mean(png)),
            "agreement": float(np.mean(agree)), "mean_abs_level_deviation": float(np.mean(dev)),
            "edge_step_s": float(np.mean(step_s)),
            "allocation_s": float(np.mean(edge.select_s))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", default="default")
    p.add_argument("--size", type=lambda v: tuple(int(x) for x in v.split("x")),
                   default=(320, 136))
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--B", type=float, default=1.5)
    p.add_argument("--delay", type=int, default=2, help="feedback delay in frames")
    p.add_argument("--model", default=DEFAULT_MODEL)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    model = resolve_model(args.model)
    result = {"video": args.video, "size": list(args.size), "duration": args.duration,
              "fps": args.fps, "B": args.B, "delay_frames": args.delay, "model": args.model,
              "confidence_on": run(args, model, 1), "confidence_off": run(args, model, 0),
              "load": os.getloadavg()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
