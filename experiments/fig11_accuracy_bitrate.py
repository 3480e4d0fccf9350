"""Accuracy-bitrate curves of STAC against its baselines (STAC Fig. 1 / Fig. 11 analogue, issue 5).

    python experiments/fig11_accuracy_bitrate.py --out out/fig11 [--quick] [--fps 10] \\
        [--clips bikes,solidWhiteRight,NAME=VIDEO@WxH] [--workers 2]

A sweep on the experiment library (`stac.experiment.sweep`, one process per run on a local
pool or on Ray, resumable) over each clip of `--clips` (``NAME=VIDEO[@WxH]``; VIDEO is a
file, a folder, or ``default``, the clip bikes.mp4 at 640x272 that ships with the project;
the names ``bikes`` and ``solidWhiteRight`` (``$STAC_DATA/videos/solidWhiteRight.mp4`` at
480x360, the data root defaulting to ../shared/data) are the clips of
experiments/figures/fig11_*):

- `stac` over a sweep of the bound B at keyframe rate `--fps` (and `--fps2` if given),
- `uniform` (the same codec, keyframes and segmentation propagation, one table level for
  the whole frame) over a sweep of levels,
- `grace`, the paper's GRACE+ (`uniform` with every keyframe coded as an individual intra
  image), over the same levels,
- `h264` (x264, uniform QP) over QPs and `jpeg` over qualities, at the same keyframe rate,
- `accmpeg` (AccMPEG: the AccModel's mask at QP qp, the rest at qp + 10, on the project
  codec) over its quality pair, at the same keyframe rate (and `--fps2`),
- `casva`'s offline curve (§VIII-B): x264 over its whole grid of resolution x fps x QP
  (`CASVA_GRID`, the grid of `stac-sim casva profile`), compared at every `--fps`,

with the model `--model` (default `stac.schemes.DEFAULT_MODEL`) and its shipped tables, over
`--trace` or, by
default, a constant high-bandwidth trace that the script writes into OUT (`--kbps`, default
200 Mbps), so that every keyframe arrives (accuracy reflects compression, not drops).

The library keeps every run in OUT/sweep (runs/<run_id>/ and its own runs.csv); a rerun
skips finished runs. OUT/runs.csv has one row per run in this figure's shape: kbps = real
bytes sent x 8 / video seconds; PA and mIoU against the model's output on the raw frame
(`stac.groundtruth`, cached), averaged over every frame with a result (propagated ones
included; `pa`, `miou`) and over the keyframes' own results (`key_pa`, `key_miou`).
OUT/fig11.png: PA and mIoU against kbps, one curve per scheme, one column per clip. Printed
JSON (also OUT/savings.json): per clip and fps, the BD-rate of `stac` against each other
scheme at equal PA (and at equal keyframe PA, and mIoU), each curve reduced to its Pareto
front first (`stac.experiment.bd_rates`); `saving` = -BD-rate (0.25: stac needs 25% fewer
bits). `--replot` redoes figure and savings from an existing OUT/runs.csv (e.g. rows of
several runs of this script merged) without running anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from stac.experiment import bd_rates, pareto_front, plot_accuracy_bitrate, sweep
from stac.schemes import DEFAULT_MODEL
from stac.traces import Trace, save_trace

REPO = Path(__file__).resolve().parent.parent
SWEEPS = {  # scheme -> (knob, default values)
    "stac": ("B", [0.5, 1.5, 4.0, 10.0, 25.0]),
    "stac-plus": ("B", [0.5, 1.5, 4.0, 10.0, 25.0]),
    "uniform": ("level", [6, 10, 14, 18, 22, 26]),
    "grace": ("level", [6, 10, 14, 18, 22, 26]),
    "h264": ("qp", [20, 26, 32, 38, 44]),
    "jpeg": ("quality", [10, 30, 60, 85, 95]),
    "accmpeg": ("qp", [22, 26, 30, 34, 38]),  # the pair (qp, qp + gap), gap 10
    "casva": ("qp", [24, 30, 36, 42]),
}
CASVA_GRID = {"scale": [1.0, 0.75, 0.5], "fps": [2.0, 5.0, 10.0]}  # with the QPs above
QUICK = {"stac": [1.0, 8.0], "uniform": [10, 22], "grace": [10, 22], "h264": [30, 42],
         "jpeg": [15, 65], "accmpeg": [26, 36], "casva": [30, 42]}
COLUMNS = ["clip", "scheme", "knob", "value", "fps", "frames", "keyframes", "delivered",
           "dropped", "bytes", "video_s", "kbps", "pa", "miou", "key_pa", "key_miou",
           "wall_s"]


def data_root() -> Path:
    """The data root (DESIGN.md "Data"): `$STAC_DATA`, else ../shared/data beside the checkout."""
    return Path(os.environ.get("STAC_DATA") or REPO.parent / "shared" / "data")


def named_clips() -> dict[str, str]:
    """The clips of experiments/figures/fig11_*, by name: ``--clips bikes,solidWhiteRight``."""
    return {"bikes": "bikes=default",
            "solidWhiteRight": "solidWhiteRight="
                               f"{data_root() / 'videos' / 'solidWhiteRight.mp4'}@480x360"}


def parse_clips(text: str) -> dict[str, tuple[str, str | None]]:
    """``NAME=VIDEO[@WxH]`` or a name of `named_clips`, comma-separated (a bare VIDEO is
    named after its file) -> name: (video, size)."""
    clips = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        item = named_clips().get(item, item)
        name, _, video = item.rpartition("=")
        video, _, size = video.partition("@")
        if video == "default":
            name, size = name or "bikes", size or None
        elif not Path(video).exists():
            sys.exit(f"--clips: {item!r}: no such video file or folder {video!r}")
        clips[name or Path(video).stem] = (video, size or None)
    return clips


def build_spec(args, clips: dict, trace: Path) -> dict:
    """The sweep: one grid table per clip, keyframe rate and scheme (values swept)."""
    grids = []
    for video, size in clips.values():
        for fps in [args.fps] + ([args.fps2] if args.fps2 else []):
            for scheme in args.schemes.split(","):
                knob, values = SWEEPS[scheme]
                given = getattr(args, scheme)
                if given is not None:
                    values = [type(values[0])(v) for v in given.split(",")]
                elif args.quick:
                    values = QUICK[scheme]
                grid = {"video": video, "scheme": scheme, "fps": fps, knob: values}
                if scheme == "casva":  # its offline curve spans resolution x fps x QP
                    grid.update(CASVA_GRID)
                if size:
                    grid["size"] = size
                grids.append(grid)
    base = {"trace": str(trace), "model": args.model, "tuner": "fixed"}  # fixed configurations
    if args.duration is not None:
        base["duration"] = args.duration
    return {"base": base, "grid": grids}


def figure_rows(runs: pd.DataFrame, clips: dict, fps: list[float] | None = None
                ) -> pd.DataFrame:
    """The library's runs table in this figure's shape (clip, knob, value; ok runs only).
    `casva`'s rows (whole grid) are listed once per figure keyframe rate in `fps`, with
    their own rate in `value` (scale/fps/qp): its curve is compared at every rate."""
    names = {(v, s): n for n, (v, s) in clips.items()}
    ok = runs[runs["status"] == "ok"].copy()
    size = ok["size"] if "size" in ok else pd.Series(None, index=ok.index)
    ok["clip"] = [names[(v, None if pd.isna(s) else s)] for v, s in zip(ok["video"], size,
                                                                        strict=True)]
    ok["knob"] = [SWEEPS[s][0] for s in ok["scheme"]]
    ok["value"] = pd.Series([type(SWEEPS[r["scheme"]][1][0])(r[SWEEPS[r["scheme"]][0]])
                             for _, r in ok.iterrows()],  # B a float; levels, QPs... ints
                            index=ok.index, dtype=object)
    ok["fps"] = ok["fps"].astype(float)
    casva = ok["scheme"] == "casva"
    if casva.any():
        c = ok[casva].copy()
        c["knob"] = "scale/fps/qp"
        c["value"] = [f"{r['scale']:g}/{r['fps']:g}/{int(r['qp'])}" for _, r in c.iterrows()]
        ok = pd.concat([ok[~casva]] + [c.assign(fps=float(f)) for f in fps or []])
    return ok[COLUMNS].reset_index(drop=True)


def savings(rows: pd.DataFrame, quality: str, reference: str = "stac") -> dict:
    """BD-rate style saving of `reference` (stac, or e.g. stac-plus) against each other
    scheme at equal `quality`, per clip and keyframe rate; schemes with fewer than two
    Pareto points are left out."""
    points = pareto_front(rows, quality, by=("clip", "fps", "scheme")) \
        .groupby(["clip", "fps", "scheme"]).size()
    table = bd_rates(rows, reference=reference, metric=quality, by=("clip", "fps"))
    out: dict = {}
    for (clip, fps), group in table.groupby(["clip", "fps"], sort=False):
        if points.get((clip, fps, reference), 0) < 2:
            continue
        entry = {}
        for r in group.itertuples():
            if points.get((clip, fps, r.scheme), 0) < 2:
                continue
            if math.isnan(r.bd_rate):
                entry[r.scheme] = {"saving": None, "note": r.note,
                                   "stac_range": list(r.ref_range),
                                   "other_range": list(r.other_range)}
            else:
                entry[r.scheme] = {"saving": r.saving, "bd_rate": r.bd_rate,
                                   "range": [r.lo, r.hi]}
        out[f"{clip}@{fps:g}fps"] = entry
    return out


def plot(rows: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_accuracy_bitrate(rows, metrics=("pa", "miou"), col="clip", style="fps")
    for ax, metric in zip(fig.axes, ["PA"] * (len(fig.axes) // 2) + ["mIoU"] * (
            len(fig.axes) // 2), strict=True):
        ax.set_ylabel(f"{metric} (all frames, vs raw-frame output)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out") / "fig11")
    p.add_argument("--clips", default="bikes",
                   help="comma list of NAME=VIDEO[@WxH], or the names bikes (the shipped clip "
                        "at 640x272, the default) and solidWhiteRight ($STAC_DATA/videos/"
                        "solidWhiteRight.mp4 at 480x360; STAC_DATA defaults to ../shared/data)")
    p.add_argument("--schemes", default=",".join(SWEEPS))
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--trace", type=Path, default=None,
                   help="bandwidth trace (default: constant --kbps, written into OUT)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of each clip (default: the whole clip)")
    p.add_argument("--fps", type=float, default=5.0, help="keyframe rate (default 5)")
    p.add_argument("--fps2", type=float, default=None,
                   help="a second keyframe rate for stac (and the baselines)")
    p.add_argument("--kbps", type=float, default=200_000.0, help="constant trace bandwidth")
    p.add_argument("--quick", action="store_true",
                   help="two values per scheme, 2 s of each clip (a mechanics check)")
    for scheme, (knob, values) in SWEEPS.items():
        p.add_argument(f"--{scheme}", default=None,
                       help=f"comma list of {knob} values (default {values})")
    p.add_argument("--reference", default="stac",
                   help="the scheme whose savings against the others are reported")
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: CPUs)")
    p.add_argument("--address", default=None, help="Ray cluster address (--backend ray)")
    p.add_argument("--replot", action="store_true",
                   help="only redo fig11.png and savings.json from OUT/runs.csv")
    args = p.parse_args()
    if args.quick and args.duration is None:
        args.duration = 2.0
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "runs.csv"
    if args.replot:
        rows = pd.read_csv(csv_path)
    else:
        trace = args.trace
        if trace is None:
            trace = args.out / "bandwidth.csv"
            save_trace(Trace(np.array([0.0]), np.array([args.kbps]), name="constant",
                             end_s=60.0), trace,
                       comment=f"constant {args.kbps:g} kbps (fig11: no drops, no queues)")
        clips = parse_clips(args.clips)
        runs = sweep(build_spec(args, clips, trace.resolve()), args.out / "sweep",
                     backend=args.backend, workers=args.workers, address=args.address)
        for r in runs[runs["status"] != "ok"].itertuples():
            print(f"run {r.run_id} failed: {r.error}", file=sys.stderr)
        rows = figure_rows(runs, clips, [args.fps] + ([args.fps2] if args.fps2 else []))
        rows.to_csv(csv_path, index=False)
    plot(rows, args.out / "fig11.png")
    result = {"reference": args.reference,
              "savings_at_equal_pa": savings(rows, "pa", args.reference),
              "savings_at_equal_keyframe_pa": savings(rows, "key_pa", args.reference),
              "savings_at_equal_miou": savings(rows, "miou", args.reference),
              "runs": str(csv_path), "figure": str(args.out / "fig11.png"),
              "model": args.model, "duration": args.duration, "trace_kbps": args.kbps,
              "machine": {"cpus": os.cpu_count(), "load": os.getloadavg(),
                          "platform": platform.platform()}}
    (args.out / "savings.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
