"""Accuracy-bitrate curves of STAC against its baselines (STAC Fig. 1 / Fig. 11 analogue, issue 5).

    python experiments/fig11_accuracy_bitrate.py --out out/fig11 [--quick] [--fps 10]

For each clip (the default clip bikes.mp4 at 640x272, and
../shared/data/videos/solidWhiteRight.mp4 resized to 480x360) the simulator
(`stac.sim.runner.run`, one process, one shared model) plays:

- `stac` over a sweep of the bound B at keyframe rate `--fps` (and `--fps2` if given),
- `uniform` (the same codec, keyframes and segmentation propagation, one table level for
  the whole frame) over a sweep of levels,
- `grace`, the paper's GRACE+ (`uniform` with every keyframe coded as an individual intra
  image), over the same levels,
- `h264` (x264, uniform QP) over QPs and `jpeg` over qualities, at the same keyframe rate,

with the shipped model (default `bisenet`) and its shipped tables, over a constant
high-bandwidth trace that the script writes into OUT (`--kbps`, default 200 Mbps), so that
every keyframe arrives (accuracy reflects compression, not drops or queueing).

Per run, one CSV row (OUT/runs.csv, appended as each run ends; runs already in it are
skipped, so a crashed sweep resumes): kbps = real bytes sent x 8 / video seconds; PA and
mIoU against the model's output on the raw frame (`stac.groundtruth`, cached), averaged
over every frame with a result (propagated ones included; `pa`, `miou`) and over the
keyframes' own results (the edge's segmentation of the decoded keyframe against the raw
keyframe's; `key_pa`, `key_miou`). OUT/fig11.png: PA and mIoU against kbps, one curve per
scheme, one column per clip. Printed JSON (also OUT/savings.json): per clip and fps, the
BD-rate of `stac` (or `--reference`, e.g. stac-plus) against each other scheme at equal
PA (and at equal keyframe PA): log
bitrate as a PCHIP function of PA over the PA range both curves cover, each curve reduced
to its Pareto front first (`stac.metrics.rd_front`); `saving` = -BD-rate (0.25: stac
needs 25% fewer bits).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from stac.agents import EdgeAgent, EdgeOutput
from stac.codec.labels import decode_labels
from stac.frames import open_source
from stac.groundtruth import GroundTruth
from stac.metrics import bd_rate, rd_front
from stac.schemes import DEFAULT_MODEL, Scheme
from stac.sim.runner import resolve_model, run, run_options
from stac.traces import Trace, save_trace

REPO = Path(__file__).resolve().parent.parent
CLIPS = {
    "bikes": ("default", None),
    "solidWhiteRight": (str(REPO.parent / "shared" / "data" / "videos" / "solidWhiteRight.mp4"),
                        (480, 360)),
}
SWEEPS = {  # scheme -> (knob name, RunOptions field, default values)
    "stac": ("B", "B", [0.5, 1.5, 4.0, 10.0, 25.0]),
    "stac-plus": ("B", "B", [0.5, 1.5, 4.0, 10.0, 25.0]),
    "uniform": ("level", "level", [6, 10, 14, 18, 22, 26]),
    "grace": ("level", "level", [6, 10, 14, 18, 22, 26]),
    "h264": ("qp", "qp", [20, 26, 32, 38, 44]),
    "jpeg": ("quality", "quality", [10, 30, 60, 85, 95]),
}
QUICK = {"stac": [1.0, 8.0], "stac-plus": [1.0, 8.0], "uniform": [10, 22], "grace": [10, 22],
         "h264": [30, 42], "jpeg": [15, 65]}
COLUMNS = ["clip", "scheme", "knob", "value", "fps", "frames", "keyframes", "delivered",
           "dropped", "bytes", "video_s", "kbps", "pa", "miou", "key_pa", "key_miou",
           "wall_s"]


class RecordingEdge(EdgeAgent):
    """Passes every call to the scheme's edge and keeps each keyframe's segmentation."""

    def __init__(self, inner: EdgeAgent) -> None:
        self.inner = inner
        self.results: dict[int, bytes] = {}

    def on_keyframe(self, keyframe):
        out: EdgeOutput = self.inner.on_keyframe(keyframe)
        if out.feedback is not None:
            self.results[keyframe.index] = out.feedback.segmentation
        return out

    def on_second(self, second, bitrate_kbps, bandwidth_kbps, content):
        return self.inner.on_second(second, bitrate_kbps, bandwidth_kbps, content)


def keyframe_accuracy(results: dict[int, bytes], gt: GroundTruth, source, duration):
    """Mean PA and mIoU of the keyframes' own results against the raw frames' output."""
    pa, miou = [], []
    for frame in source:
        if duration is not None and frame.t >= duration - 1e-9:
            break
        if frame.index in results:
            a, m = gt.score(frame, decode_labels(results[frame.index]))
            pa.append(a)
            miou.append(m)
    return (float(np.mean(pa)), float(np.mean(miou))) if pa else (math.nan, math.nan)


def one_run(args, model, clip: str, scheme: str, value, fps: float, trace: Path) -> dict:
    video, size = CLIPS[clip]
    size = args.size or size
    knob, field, _ = SWEEPS[scheme]
    out = args.out / "runs" / clip / f"{scheme}-{knob}{value}-fps{fps:g}"
    options = run_options(dict(trace=str(trace), out=str(out), video=video, scheme=scheme,
                         model=args.model, duration=args.duration, fps=fps, size=size,
                         **{field: value}))
    recorder: list[RecordingEdge] = []

    def prepare(s: Scheme) -> None:
        s.edge = RecordingEdge(s.edge)
        recorder.append(s.edge)

    t0 = time.perf_counter()
    summary = run(options, model=model, prepare=prepare)
    source = open_source(video, size=size)
    gt = GroundTruth(model, source, args.model)
    key_pa, key_miou = keyframe_accuracy(recorder[0].results, gt, source, args.duration)
    fs = summary["frame_stats"]
    return {"clip": clip, "scheme": scheme, "knob": knob, "value": value, "fps": fps,
            "frames": summary["frames"], "keyframes": summary["keyframes"],
            "delivered": summary["delivered"], "dropped": summary["dropped"],
            "bytes": summary["bytes"], "video_s": summary["video_s"],
            "kbps": summary["bytes"] * 8 / 1000 / summary["video_s"],
            "pa": fs["pa"]["mean"], "miou": fs["miou"]["mean"], "key_pa": key_pa,
            "key_miou": key_miou, "wall_s": time.perf_counter() - t0}


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in COLUMNS[3:]:
            r[k] = float(r[k])
    return rows


def savings(rows: list[dict], quality: str, reference: str = "stac",
            low: float | None = None) -> dict:
    """BD-rate style saving of `reference` against each other scheme at equal `quality`
    (over quality >= `low` only, when given)."""
    out: dict = {}
    for clip in dict.fromkeys(r["clip"] for r in rows):
        for fps in sorted({r["fps"] for r in rows if r["clip"] == clip
                           and r["scheme"] == reference}):
            curves = {}
            for scheme in SWEEPS:
                pts = [r for r in rows if r["clip"] == clip and r["scheme"] == scheme
                       and r["fps"] == fps and r["kbps"] > 0 and not math.isnan(r[quality])]
                if len(pts) >= 2:
                    curves[scheme] = rd_front([r["kbps"] for r in pts], [r[quality] for r in pts])
            if reference not in curves or len(curves[reference][0]) < 2:
                continue
            sr, sq = curves[reference]
            entry = {}
            for other, (r, q) in curves.items():
                if other == reference or len(r) < 2:
                    continue
                lo = max(sq.min(), q.min(), -math.inf if low is None else low)
                hi = min(sq.max(), q.max())
                try:
                    bd = bd_rate(r, q, sr, sq, low=low)
                except ValueError as exc:
                    entry[other] = {"saving": None, "note": str(exc),
                                    "stac_range": [float(sq.min()), float(sq.max())],
                                    "other_range": [float(q.min()), float(q.max())]}
                    continue
                entry[other] = {"saving": -bd, "bd_rate": bd, "range": [float(lo), float(hi)]}
            out[f"{clip}@{fps:g}fps"] = entry
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = list(dict.fromkeys(r["clip"] for r in rows))
    fig, axes = plt.subplots(2, len(clips), figsize=(5.5 * len(clips), 7.5), squeeze=False)
    colours = dict(zip(SWEEPS, plt.get_cmap("tab10").colors, strict=False))
    rates = sorted({r["fps"] for r in rows})  # one line style per keyframe rate
    for j, clip in enumerate(clips):
        for scheme in SWEEPS:
            for fps in sorted({r["fps"] for r in rows if r["clip"] == clip
                               and r["scheme"] == scheme}):
                pts = sorted((r for r in rows if r["clip"] == clip and r["scheme"] == scheme
                              and r["fps"] == fps), key=lambda r: r["kbps"])
                style = dict(color=colours[scheme], ls=("-", "--", ":")[rates.index(fps) % 3],
                             marker="o", ms=4, label=f"{scheme} @{fps:g} fps")
                for i, metric in enumerate(("pa", "miou")):
                    axes[i][j].plot([r["kbps"] for r in pts], [r[metric] for r in pts], **style)
        for i, metric in enumerate(("PA", "mIoU")):
            ax = axes[i][j]
            ax.set_xscale("log")
            ax.set_xlabel("bitrate (kbps)")
            ax.set_ylabel(f"{metric} (all frames, vs raw-frame output)")
            ax.set_title(clip)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "out" / "fig11")
    p.add_argument("--clips", default=",".join(CLIPS), help="comma list of " + ", ".join(CLIPS))
    p.add_argument("--schemes", default=",".join(SWEEPS))
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of each clip (default: the whole clip)")
    p.add_argument("--fps", type=float, default=5.0, help="keyframe rate (default 5)")
    p.add_argument("--fps2", type=float, default=None,
                   help="a second keyframe rate for stac (and the baselines)")
    p.add_argument("--kbps", type=float, default=200_000.0, help="constant trace bandwidth")
    p.add_argument("--quick", action="store_true",
                   help="two values per scheme, 2 s of each clip (a mechanics check)")
    for scheme, (knob, _, values) in SWEEPS.items():
        p.add_argument(f"--{scheme}", default=None,
                       help=f"comma list of {knob} values (default {values})")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--size", type=lambda v: tuple(int(x) for x in v.split("x")), default=None,
                   help="resize every clip to WxH (default: each clip's own size)")
    p.add_argument("--band", type=float, default=0.95,
                   help="keyframe-PA savings are also reported over PA >= this (default 0.95)")
    p.add_argument("--reference", default="stac",
                   help="the scheme whose savings against the others are reported")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.quick and args.duration is None:
        args.duration = 2.0
    args.out.mkdir(parents=True, exist_ok=True)
    trace_path = args.out / "bandwidth.csv"
    save_trace(Trace(np.array([0.0]), np.array([args.kbps]), name="constant", end_s=60.0),
               trace_path, comment=f"constant {args.kbps:g} kbps (fig11: no drops, no queues)")
    model = resolve_model(args.model)
    csv_path = args.out / "runs.csv"
    rows = read_rows(csv_path)
    done = {(r["clip"], r["scheme"], r["value"], r["fps"]) for r in rows}
    fpss = [args.fps] + ([args.fps2] if args.fps2 else [])
    plan = []
    for clip in args.clips.split(","):
        for fps in fpss:
            for scheme in args.schemes.split(","):
                knob, field, values = SWEEPS[scheme]
                given = getattr(args, scheme.replace("-", "_"))
                if given is not None:
                    values = [type(values[0])(v) for v in given.split(",")]
                elif args.quick:
                    values = QUICK[scheme]
                plan += [(clip, scheme, v, fps) for v in values]
    new = not csv_path.exists()
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for n, (clip, scheme, value, fps) in enumerate(plan):
            if (clip, scheme, float(value), fps) in done:
                continue
            row = one_run(args, model, clip, scheme, value, fps, trace_path)
            writer.writerow(row)
            f.flush()
            rows.append({**row, "value": float(value)})
            print(f"[{n + 1}/{len(plan)}] {clip} {scheme} {row['knob']}={value} fps={fps:g}: "
                  f"{row['kbps']:.0f} kbps PA {row['pa']:.4f} mIoU {row['miou']:.4f} "
                  f"key PA {row['key_pa']:.4f} ({row['wall_s']:.0f} s)", flush=True)
    plot(rows, args.out / "fig11.png")
    result = {"reference": args.reference,
              "savings_at_equal_pa": savings(rows, "pa", args.reference),
              "savings_at_equal_keyframe_pa": savings(rows, "key_pa", args.reference),
              "savings_at_equal_miou": savings(rows, "miou", args.reference),
              "savings_at_equal_keyframe_pa_above_band": savings(rows, "key_pa",
                                                                 args.reference, args.band),
              "band": args.band,
              "runs": str(csv_path), "figure": str(args.out / "fig11.png"),
              "model": args.model, "duration": args.duration, "trace_kbps": args.kbps,
              "machine": {"cpus": os.cpu_count(), "load": os.getloadavg(),
                          "platform": platform.platform()}}
    (args.out / "savings.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
