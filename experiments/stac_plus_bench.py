"""Device and edge step times of `stac-plus` next to `stac` (issue 16), printed as JSON.

    python experiments/stac_plus_bench.py [--video PATH] [--size 480x360] [--seconds 4]
        [--fps 5] [--B 1.5] [--delay 2] [--schemes "stac,stac-plus,stac-plus[diff_bits=0.91]"]

Each scheme's device and edge (built by the scheme, the default model and its tables) run
in lockstep on a real clip (default: videos/solidWhiteRight.mp4 of the data root at
480x360, its 25 fps): every frame goes through `device.on_frame` (DIS flow into the cache,
propagation of the newest fed-back segmentation, and on keyframes the levels l', the
residual rule and the real encode), every keyframe through `edge.on_keyframe` (decode,
segmentation + gradients, allocation, feedback), whose feedback reaches the device
`--delay` frames later. Wall-clock times on this host, one torch thread: median and p95
of the device's step on other frames (the flow + propagation step, the >= 30 frames/s
target) and on keyframes, and of the edge's keyframe step; for `stac-plus` also the
allocation's share (size estimates + bisection).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from stac.data import data_root
from stac.frames import open_source
from stac.schemes import DEFAULT_MODEL, Stream, make_scheme
from stac.sim.runner import resolve_model


def _stats(values: list[float]) -> dict:
    ms = 1000 * np.asarray(values)
    return {"n": int(ms.size), "median_ms": round(float(np.median(ms)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def parse_variant(text: str) -> tuple[str, dict]:
    """``scheme`` or ``scheme[key=value;...]`` -> (scheme, {key: value}), numbers as numbers."""
    name, _, rest = text.partition("[")
    if not rest:
        return name, {}
    if not rest.endswith("]"):
        raise SystemExit(f"--schemes: {text!r}: expected scheme[key=value;...]")
    pairs = [item.partition("=") for item in rest[:-1].split(";") if item]
    return name, {key: _number(value) for key, _, value in pairs}


def _number(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def bench(scheme_name: str, frames: list[np.ndarray], source_fps: float, model, args) -> dict:
    """Step times of one scheme's device and edge over `frames` in lockstep."""
    h, w = frames[0].shape[:2]
    name, extra = parse_variant(scheme_name)
    built = make_scheme(name, {"B": args.B, "fps": args.fps, **extra}).build(
        Stream(source_fps=source_fps, frame_size=(w, h)), model)
    device, edge = built.device, built.edge
    allocation_s: list[float] = []
    if hasattr(edge, "select"):  # stac-plus: time the allocation inside the edge's step
        inner = edge.select

        def timed(*a, **k):
            t0 = time.perf_counter()
            out = inner(*a, **k)
            allocation_s.append(time.perf_counter() - t0)
            return out

        edge.select = timed
    pending: dict = {}
    other, key, edge_s = [], [], []
    for i, frame in enumerate(frames):
        if i in pending:
            device.on_feedback(pending.pop(i))
        t0 = time.perf_counter()
        out = device.on_frame(i, i / source_fps, frame)
        dt = time.perf_counter() - t0
        if out.keyframe is None:
            other.append(dt)
            continue
        key.append(dt)
        t0 = time.perf_counter()
        feedback = edge.on_keyframe(out.keyframe).feedback
        edge_s.append(time.perf_counter() - t0)
        pending[i + args.delay] = feedback
    result = {"device_other_frames": _stats(other[2:]),  # the first frames warm the caches
              "device_fps_other_frames": round(1.0 / float(np.median(other[2:])), 1),
              "device_keyframes": _stats(key[1:]), "edge_keyframes": _stats(edge_s[1:])}
    if allocation_s:
        result["edge_allocation"] = _stats(allocation_s[1:])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", default=str(data_root() / "videos" / "solidWhiteRight.mp4"))
    p.add_argument("--size", type=lambda v: tuple(int(x) for x in v.split("x")),
                   default=(480, 360))
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--fps", type=float, default=5.0, help="keyframe rate")
    p.add_argument("--B", type=float, default=1.5)
    p.add_argument("--delay", type=int, default=2, help="feedback delay in frames")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--schemes", default="stac,stac-plus",
                   help="comma list; scheme[key=value;...] sets scheme parameters")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    source = open_source(args.video, size=args.size)
    frames = [f.rgb for f in source if f.t < args.seconds - 1e-9]
    model = resolve_model(args.model)
    load_before = os.getloadavg()
    result = {"video": args.video, "size": list(args.size), "frames": len(frames),
              "source_fps": source.fps, "fps": args.fps, "B": args.B, "model": args.model,
              **{name: bench(name, frames, source.fps, model, args)
                 for name in args.schemes.split(",")},
              "load_before": load_before, "load_after": os.getloadavg(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
