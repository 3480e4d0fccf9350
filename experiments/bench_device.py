"""Device step of STAC (§V-B, §VII): DIS flow + pixel-level propagation, frames/s at 480x360.

Reads a real clip (default: videos/solidWhiteRight.mp4 of the data root, resized), pushes every
frame into the flow cache and warps a fed-back segmentation to it, as the device does for
every captured frame. Prints JSON. The target (issue 5) is >= 30 frames/s on this CPU.

    python experiments/bench_device.py [--video PATH] [--frames 200] [--preset ultrafast]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from device.flow import DISFlow, FlowCache, FlowConfig, to_grey
from device.propagation import propagate_labels
from stac.data import data_root
from stac.frames import open_video

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = data_root() / "videos" / "solidWhiteRight.mp4"


def keyframe_step_ms(frames: list[np.ndarray], args: argparse.Namespace) -> dict[str, float]:
    """Median ms of StacDevice.on_frame on keyframes (l' propagation, scratch intra encode at
    l', Eq. 7 residual levels, real encode) and on other frames, levels fed back each time."""
    from device.stac_agent import StacDevice
    from stac.codec.labels import encode_labels
    from stac.codec.quant import default_tables
    from stac.protocol import Config, Feedback

    h, w = frames[0].shape[:2]
    device = StacDevice(default_tables(), Config.of({"B": 1.0, "fps": 5.0}),
                        source_fps=25.0, frame_size=(w, h),
                        flow=FlowConfig(preset=args.preset, finest_scale=args.finest_scale))
    rng = np.random.default_rng(0)
    key, other = [], []
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        out = device.on_frame(i, i / 25.0, frame)
        dt = 1e3 * (time.perf_counter() - t0)
        if out.keyframe is not None:
            if i > 0:  # the first keyframe pays numba compilation
                key.append(dt)
            levels = rng.integers(20, 32, size=device.encoder.grid).astype(np.uint8)
            labels = rng.integers(0, 11, size=(h, w)).astype(np.uint8)
            device.on_feedback(Feedback(i, encode_labels(labels), encode_labels(levels)))
        else:
            other.append(dt)
    return {"keyframe": float(np.median(key)), "other_frame": float(np.median(other)),
            "keyframes": len(key)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--preset", default="ultrafast")
    parser.add_argument("--finest-scale", type=int, default=2)
    parser.add_argument("--keyframe-every", type=int, default=5,
                        help="a fed-back result arrives for every N-th frame, 2 frames later")
    parser.add_argument("--keyframe-frames", type=int, default=31,
                        help="frames run through the full STAC device agent (keyframes at 5 fps)")
    args = parser.parse_args()

    frames = [f.rgb for f in open_video(args.video, size=(args.width, args.height),
                                        max_frames=args.frames)]
    greys = [to_grey(f) for f in frames]  # colour conversion is the capture's, not timed
    labels = np.random.default_rng(0).integers(0, 11, greys[0].shape).astype(np.uint8)
    config = FlowConfig(preset=args.preset, finest_scale=args.finest_scale)
    cache = FlowCache(DISFlow(config))
    flow_s = prop_s = 0.0
    for t, grey in enumerate(greys):
        t0 = time.perf_counter()
        cache.push(t, grey)
        k = t - 2
        if k >= 0 and k % args.keyframe_every == 0:
            cache.set_anchor(k)  # feedback of keyframe k arrives: re-compose its flows
        t1 = time.perf_counter()
        if cache.anchor is not None:
            propagate_labels(labels, cache.to_anchor())
        t2 = time.perf_counter()
        flow_s += t1 - t0
        prop_s += t2 - t1
    n = len(greys)
    total = flow_s + prop_s
    keyframe_ms = keyframe_step_ms(frames[:args.keyframe_frames], args)
    print(json.dumps({
        "benchmark": "device_step", "video": Path(args.video).name, "frames": n,
        "resolution": f"{args.width}x{args.height}", "preset": args.preset,
        "finest_scale": args.finest_scale, "flow_ms": 1e3 * flow_s / n,
        "propagation_ms": 1e3 * prop_s / n, "fps": n / total,
        "target_fps": 30, "meets_target": n / total >= 30,
        "stac_keyframe_ms": keyframe_ms,
        "cv2_threads": cv2.getNumThreads(), "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0], "machine": platform.processor() or platform.machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
