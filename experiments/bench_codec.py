"""Benchmark of the project's codec (issue 3): bit-exactness, rate-distortion vs x264, speed.

    python experiments/bench_codec.py [--quick] [--out results.json]

Prints one JSON object. Clips: the default clip (bikes.mp4, 640x272) and
the data root's videos/solidWhiteRight.mp4 (`stac-sim data list`) resized to 480x360.
- exact: every frame of both clips (IPPP..., one intra frame) decodes bit-exactly to the
  encoder's reconstruction.
- rd: first 60 frames of both clips, three uniform levels (= H.264 QPs; the intra frame
  uses level - 3 as x264's default ipratio 1.4 does), against x264 (preset veryfast, tune
  zerolatency, constant QP, same GOP). Y-PSNR is the mean per-frame PSNR of the luma plane
  (both codecs code the same BT.601 4:2:0 planes); BD-rate by PCHIP interpolation of
  log-rate over the overlapping PSNR range (Bjontegaard; >0 means more bits than x264).
- speed: frames/s at 480x360 after a warm-up (numba compiled): wall clock on this host, and
  per CPU-second of the process (the codec is single-threaded), with the load average, as
  other jobs share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from stac.codec.color import psnr, rgb_to_ycbcr420
from stac.codec.decoder import Decoder
from stac.codec.encoder import Encoder
from stac.codec.reference import X264Decoder, X264Encoder
from stac.data import data_root
from stac.frames import default_clip_path, open_video
from stac.metrics import bd_rate

REPO = Path(__file__).resolve().parent.parent
SHARED_VIDEO = data_root() / "videos" / "solidWhiteRight.mp4"


def read_frames(path: Path, n: int | None = None, size: tuple[int, int] | None = None):
    """RGB uint8 frames of a video (first n), resized to size=(width, height) if given."""
    return [f.rgb for f in open_video(path, size=size, max_frames=n)]


def run_ours(frames, level: int, intra_offset: int = 3):
    """Encode + decode a clip (IPPP...); returns bytes and Y-PSNR per frame, and whether every
    decoded frame equals the encoder's reconstruction (all three planes)."""
    h, w = frames[0].shape[:2]
    enc, dec = Encoder(w, h), Decoder()
    sizes, quality, exact = [], [], True
    for i, f in enumerate(frames):
        planes = rgb_to_ycbcr420(f)
        ef = enc.encode_planes(*planes, levels=max(0, level - intra_offset) if i == 0 else level)
        out = dec.decode_planes(ef.data)
        exact &= all(np.array_equal(a, b) for a, b in zip(ef.planes, out, strict=True))
        sizes.append(len(ef.data))
        quality.append(psnr(out[0], planes[0]))
    return sizes, quality, exact


def run_x264(frames, qp: int, gop: int):
    h, w = frames[0].shape[:2]
    enc, dec = X264Encoder(w, h, qp=qp, gop=gop), X264Decoder(w, h)
    sizes, quality = [], []
    for f in frames:
        y = rgb_to_ycbcr420(f)
        data = enc.encode_planes(*y)
        out = dec.decode_planes(data)
        sizes.append(len(data))
        quality.append(psnr(out[0][:h, :w], y[0]))
    return sizes, quality


def bench_rd(name: str, frames, levels, fps: float) -> dict:
    n = len(frames)
    ours, ref = [], []
    for lv in levels:
        s, q, _ = run_ours(frames, lv)
        ours.append({"level": lv, "kbps": 8 * sum(s) / n * fps / 1000, "psnr_y": float(np.mean(q))})
        s, q = run_x264(frames, lv, gop=n)
        ref.append({"qp": lv, "kbps": 8 * sum(s) / n * fps / 1000, "psnr_y": float(np.mean(q))})
    bd = bd_rate(
        [r["kbps"] for r in ref],
        [r["psnr_y"] for r in ref],
        [o["kbps"] for o in ours],
        [o["psnr_y"] for o in ours],
    )
    return {
        "clip": name,
        "frames": n,
        "ours": ours,
        "x264": ref,
        "bd_rate": bd,
        "bitrate_ratio_at_equal_psnr": 1.0 + bd,
    }


def bench_exact(name: str, frames, level: int) -> dict:
    sizes, quality, exact = run_ours(frames, level)
    return {
        "clip": name,
        "frames": len(frames),
        "level": level,
        "bit_exact": exact,
        "mean_bytes": float(np.mean(sizes)),
        "psnr_y": float(np.mean(quality)),
    }


def bench_speed(frames, level: int) -> dict:
    h, w = frames[0].shape[:2]
    warm = Encoder(w, h)
    Decoder().decode(warm.encode(frames[0], level).data)  # compile / load numba caches
    enc, dec = Encoder(w, h), Decoder()
    t0, c0 = time.perf_counter(), time.process_time()
    coded = [enc.encode(f, level).data for f in frames]
    t1, c1 = time.perf_counter(), time.process_time()
    for data in coded:
        dec.decode(data)
    t2, c2 = time.perf_counter(), time.process_time()
    n = len(frames)
    return {
        "size": f"{w}x{h}",
        "frames": n,
        "level": level,
        "encode_fps": n / (t1 - t0),
        "decode_fps": n / (t2 - t1),
        "encode_fps_cpu": n / (c1 - c0),  # frames per CPU-second of this process
        "decode_fps_cpu": n / (c2 - c1),
        "kbps_at_25fps": 8 * sum(len(d) for d in coded) / n * 25 / 1000,
        "loadavg_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 frames per part (smoke run)")
    parser.add_argument("--parts", default="exact,rd,speed")
    parser.add_argument("--levels", default="26,32,38")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    levels = [int(v) for v in args.levels.split(",")]
    n_all = 20 if args.quick else None
    n_rd = 20 if args.quick else 60
    clips = {
        "bikes": (default_clip_path(), None, 25.0),
        "solidWhiteRight": (SHARED_VIDEO, (480, 360), 25.0),
    }
    result = {"host": platform.node(), "python": platform.python_version()}
    if "exact" in parts:
        result["exact"] = [
            bench_exact(k, read_frames(p, n_all, s), 30) for k, (p, s, _) in clips.items()
        ]
    if "rd" in parts:
        result["rd"] = [
            bench_rd(k, read_frames(p, n_rd, s), levels, fps) for k, (p, s, fps) in clips.items()
        ]
        result["bd_rate_mean"] = float(np.mean([r["bd_rate"] for r in result["rd"]]))
    if "speed" in parts:
        frames = read_frames(SHARED_VIDEO, 30 if not args.quick else 10, (480, 360))
        result["speed"] = [bench_speed(frames, lv) for lv in (levels[0], levels[-1])]
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
