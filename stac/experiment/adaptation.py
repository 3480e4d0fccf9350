"""Adaptive runs over real traces (STAC §VIII, Figs. 12, 13, 15c, 16), on the experiment library.

The pieces the adaptation experiments share: the real trace families imported into project
CSVs and scaled to the video by the pixel-ratio rule (`pixel_factor`, docs/traces.md),
evaluation segments of them (`pick_segments`, run with `--trace-start`), a looped clip
(`looped_clip`: the clips are 9-10 s long, the segments 30-60 s), the sweep spec of a set of
schemes and tuners over the segments (`adaptive_spec`), and the per-run numbers of issue 12
(`run_metrics`: overshoot, dropped keyframes, utilisation where the link binds, delay and
result age), with the plots of the four figures.

    from stac.experiment import sweep
    from stac.experiment.adaptation import import_family, pick_segments, adaptive_spec
    segs = pick_segments("lte", import_family("lte", "out/traces"), n=2, seconds=30, seed=0)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stac.experiment.results import RunResult, open_run
from stac.experiment.runs import run_dir

#: the frame size the real traces' bandwidths are for (the paper's stream, §VIII-A)
PAPER_SIZE = (2048, 1040)


@dataclass(frozen=True)
class Family:
    """A real trace family: its dataset (`stac-sim data list`), converter format, files."""

    dataset: str
    fmt: str
    pattern: str


FAMILIES: dict[str, Family] = {
    "lte": Family("lte-mahimahi", "mahimahi", "*-LTE-*"),  # .up and .down, 100 ms bins
    "fcc": Family("fcc", "cooked", "*.log"),
    "3g": Family("3g-norway", "cooked", "norway_*"),
    "wifi": Family("wifi", "iperf", "wifi_*.txt"),
}


def pixel_factor(size: tuple[int, int]) -> float:
    """The trace scale for a W x H stream: (W H) / (2048 x 1040), the pixel ratio to the
    stream the real traces carry in the paper (docs/traces.md)."""
    w, h = size
    return (w * h) / (PAPER_SIZE[0] * PAPER_SIZE[1])


#: the mean bandwidth of each family in the paper's evaluation (§VIII-A, kbps); 3G Norway is
#: not in the paper: it takes FCC's, its usual companion in throughput-trace studies
PAPER_MEAN_KBPS = {"lte": 21400.0, "fcc": 7300.0, "wifi": 5100.0, "3g": 7300.0}
RULES = ("pixel", "paper")


def family_mean_kbps(traces: Sequence[str | Path]) -> float:
    """Time-weighted mean bandwidth of trace CSVs pooled (one period each), kbps."""
    from stac.traces import load_trace

    loaded = [load_trace(p) for p in traces]
    return sum(t.total_bits for t in loaded) / sum(t.duration for t in loaded) / 1000.0


def family_factor(family: str, size: tuple[int, int], traces: Sequence[str | Path],
                  rule: str = "pixel") -> float:
    """The trace scale of `family` for a W x H stream. ``pixel``: the pixel ratio alone.
    ``paper``: the pixel ratio times (the paper's mean for the family / the mean of these
    `traces`), so the scaled family has the paper's operating point at this frame size
    (the files here are not the paper's selections: FCC 1.4 vs 7.3 Mbps); docs/traces.md."""
    if rule == "pixel":
        return pixel_factor(size)
    if rule == "paper":
        return pixel_factor(size) * PAPER_MEAN_KBPS[family] / family_mean_kbps(traces)
    raise ValueError(f"unknown scaling rule {rule!r}; known: {', '.join(RULES)}")


def import_family(family: str, dest: str | Path, root: str | Path | None = None
                  ) -> list[Path]:
    """Every file of `family` ("lte", "fcc", "3g", "wifi") as a project CSV in
    `dest/family/` (converted once; an existing CSV is reused), sorted by name."""
    from stac.data import dataset_dir
    from stac.traces import import_trace, save_trace

    if family not in FAMILIES:
        raise ValueError(f"unknown trace family {family!r}; known: {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    src = dataset_dir(fam.dataset, root)
    folder = Path(dest) / family
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in sorted(src.glob(fam.pattern)):
        csv = folder / f"{path.name.replace('.', '_')}.csv"
        if not csv.is_file():
            save_trace(import_trace(path, fam.fmt), csv,
                       comment=f"{fam.dataset}/{path.name} (stac-sim traces import "
                               f"--format {fam.fmt})")
        out.append(csv)
    return out


@dataclass(frozen=True)
class Segment:
    """`seconds` of the trace CSV `trace` from `start` on: one evaluation run's link."""

    family: str
    trace: str
    start: float
    seconds: float

    @property
    def name(self) -> str:
        """``family/file@start``."""
        return f"{self.family}/{Path(self.trace).stem}@{self.start:g}"


def pick_segments(family: str, traces: Sequence[str | Path], n: int, seconds: float,
                  seed: int, min_kbps: float = 0.0) -> list[Segment]:
    """`n` segments of `seconds` from `traces`: distinct files in a seeded order (files are
    reused, at other starts, when there are fewer than `n`), each at a seeded whole-second
    start that leaves `seconds` before the trace's end. A file whose mean is below
    `min_kbps` (a dead link) is skipped."""
    from stac.traces import load_trace

    rng = np.random.default_rng(seed)
    loaded = [(Path(p), load_trace(p)) for p in traces]
    usable = [(p, t) for p, t in loaded
              if t.duration >= seconds and t.total_bits / t.duration / 1000 >= min_kbps]
    if not usable:
        raise ValueError(f"{family}: no trace of at least {seconds:g} s among {len(traces)}")
    order = rng.permutation(len(usable))
    out = []
    for i in range(n):
        path, trace = usable[order[i % len(usable)]]
        start = float(rng.integers(0, int(trace.duration - seconds) + 1))
        out.append(Segment(family, str(path.resolve()), start, float(seconds)))
    return out


def factor_of(factor: float | Mapping[str, float], family: str) -> float:
    """One scale for all, or the scale of `family` from a mapping family -> scale."""
    return float(factor[family]) if isinstance(factor, Mapping) else float(factor)


def segments_table(segments: Sequence[Segment], factor: float | Mapping[str, float]
                   ) -> pd.DataFrame:
    """One row per segment: family, trace, start, seconds, the scale, and its scaled
    bandwidth's mean, std, min and max over 1 s bins (what the scheme faced). `factor`:
    one scale, or one per family."""
    from stac.traces import load_trace, window

    rows = []
    for s in segments:
        w = window(load_trace(s.trace), s.start, factor_of(factor, s.family))
        t = np.arange(0.0, s.seconds)
        kbps = w.bits_between(t, t + 1.0) / 1000.0
        rows.append({**asdict(s), "segment": s.name, "scale": factor_of(factor, s.family),
                     "mean_kbps": kbps.mean(),
                     "std_kbps": kbps.std(), "min_kbps": kbps.min(), "max_kbps": kbps.max()})
    return pd.DataFrame(rows)


def looped_clip(video: str | Path, size: tuple[int, int], seconds: float,
                dest: str | Path, fps: float | None = None) -> Path:
    """A folder of `seconds` of `video` at `size`, played forward then backward (ping-pong,
    so the seam has no cut), as PNG frames: `dest/<clip>_<W>x<H>/` holds the decoded frames
    once (lossless: the same pixels as `--video VIDEO --size WxH`), and
    `dest/<clip>_<W>x<H>_loop<seconds>/` links to them in looped order. `fps` subsamples the
    clip first (as `--source-fps`). Run it with `video=<that folder>`, `source_fps=<the
    rate>` (`clip_fps`)."""
    import cv2

    from stac.frames import open_source

    source = open_source(str(video), size=tuple(size), fps=fps)
    name = "bikes" if str(video) == "default" else Path(video).stem
    rate = "" if fps is None else f"_{fps:g}fps"
    frames_dir = Path(dest) / f"{name}_{size[0]}x{size[1]}{rate}"
    done = frames_dir / "done"
    if not done.is_file():
        frames_dir.mkdir(parents=True, exist_ok=True)
        count = 0
        for frame in source:
            cv2.imwrite(str(frames_dir / f"{frame.index:05d}.png"),
                        cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
            count += 1
        done.write_text(f"{count} {source.fps!r}\n")
    count = int(done.read_text().split()[0])
    total = math.ceil(seconds * source.fps - 1e-9)
    cycle = list(range(count)) + list(range(count - 2, 0, -1))  # 0..n-1, n-2..1
    loop_dir = Path(dest) / f"{frames_dir.name}_loop{seconds:g}"
    if not (loop_dir / "done").is_file():
        loop_dir.mkdir(parents=True, exist_ok=True)
        for k in range(total):
            link = loop_dir / f"{k:05d}.png"
            if not link.is_symlink():
                os.symlink(os.path.relpath(frames_dir / f"{cycle[k % len(cycle)]:05d}.png",
                                           loop_dir), link)
        (loop_dir / "done").write_text(f"{total}\n")
    return loop_dir


def clip_fps(video: str | Path, fps: float | None = None) -> float:
    """The frame rate of `video` subsampled to `fps` (what its looped folder plays at)."""
    from stac.frames import open_source

    return float(open_source(str(video), fps=fps).fps)


def adaptive_spec(segments: Sequence[Segment], runs: Sequence[Mapping[str, Any]],
                  base: Mapping[str, Any], factor: float | Mapping[str, float]
                  ) -> dict[str, Any]:
    """A sweep spec: every run of `runs` (scheme, tuner, knobs...) on every segment, over
    `base` (video, source_fps, estimator, model, seed...), the trace scaled by `factor`
    (one scale, or one per family), each run as long as its segment."""
    grids = []
    for r in runs:  # run-major: a sweep's workers take every segment of the first run first
        for seg in segments:
            grids.append({"trace": seg.trace, "trace_start": seg.start,
                          "trace_scale": factor_of(factor, seg.family),
                          "duration": seg.seconds, **dict(r)})
    return {"base": dict(base), "grid": grids}


def attach_segments(runs: pd.DataFrame, segments: Sequence[Segment]) -> pd.DataFrame:
    """`runs` with each run's `family` and `segment` (matched on trace and start)."""
    key = {(str(Path(s.trace).resolve()), float(s.start)): s for s in segments}
    fam, name = [], []
    for trace, start in zip(runs["trace"], runs["trace_start"], strict=True):
        seg = key.get((str(Path(trace).resolve()), float(start)))
        fam.append(seg.family if seg else None)
        name.append(seg.name if seg else None)
    return runs.assign(family=fam, segment=name)


def run_metrics(run: RunResult, binding_kbps: float,
                floor_kbps: float = math.nan) -> dict[str, float]:
    """Issue 12's numbers for one run: mean PA and mIoU, the fraction of seconds whose
    bitrate is above 1.05 x the bandwidth, of keyframes dropped, the mean utilisation
    (bitrate / bandwidth) over the seconds where the link binds (bandwidth below
    `binding_kbps`, the most expensive configuration's bitrate), the shown result's delay
    and age (mean, p95, s), the mean estimate error and the configuration changes. With
    `floor_kbps` (the cheapest configuration's bitrate), also the overshoot over only the
    seconds whose bandwidth is at least that (`overshoot_feasible_frac`: in an outage below
    it every configuration overshoots) and the share of such seconds (`feasible_frac`)."""
    from stac.results import OVERSHOOT_FACTOR, knob_columns, result_age_s

    f, s = run.frames, run.seconds
    age = result_age_s(f)
    keys = f["keyframe"].astype(bool)
    bw, bit = s["bandwidth_kbps"], s["bitrate_kbps"]
    binds = (bw > 0) & (bw < binding_kbps)
    knobs = knob_columns(s)
    changes = int((s[knobs].diff().abs().sum(axis=1) > 0).iloc[1:].sum()) if knobs else 0
    est = s["bandwidth_estimate_kbps"]
    feasible = bw >= floor_kbps  # all False for a NaN floor
    over = bit > OVERSHOOT_FACTOR * bw
    return {
        "pa": float(f["pa"].mean()), "miou": float(f["miou"].mean()),
        "kbps": float(bit.mean()), "bandwidth_kbps": float(bw.mean()),
        "overshoot_frac": float(over.mean()),
        "feasible_frac": float(feasible.mean()) if math.isfinite(floor_kbps) else math.nan,
        "overshoot_feasible_frac": float(over[feasible].mean()) if feasible.any()
        else math.nan,
        "dropped_key_frac": float(f.loc[keys, "dropped"].astype(bool).mean())
        if keys.any() else math.nan,
        "binding_frac": float(binds.mean()),
        "utilisation_binding": float(bit[binds].sum() / bw[binds].sum()) if binds.any()
        else math.nan,
        "delay_mean": float(f["delay_s"].mean()), "delay_p95": float(f["delay_s"].quantile(.95)),
        "age_mean": float(age.mean()), "age_p95": float(age.quantile(0.95)),
        "estimate_error": float(((est - bw).abs() / bw.where(bw > 0)).mean()),
        "changes": changes,
        **{f"{k}_mean": float(s[k].mean()) for k in knobs},
    }


def metrics_table(runs: pd.DataFrame, sweep_dir: str | Path, binding_kbps: float
                  ) -> pd.DataFrame:
    """`run_metrics` of every finished run of a runs table, beside its spec columns."""
    rows = []
    for r in runs[runs["status"] == "ok"].to_dict("records"):
        m = run_metrics(open_run(run_dir(sweep_dir, r["run_id"])), binding_kbps)
        rows.append({**{k: v for k, v in r.items() if k not in m}, **m})
    return pd.DataFrame(rows)


def frames_table(runs: pd.DataFrame, sweep_dir: str | Path, label: str = "scheme"
                 ) -> pd.DataFrame:
    """Every frame of the finished runs of `runs` (PA, mIoU, delay, result age in s) with
    the run's `family` and its `label` column as `scheme` (for the Fig. 12 plot)."""
    from stac.results import result_age_s

    parts = []
    for r in runs[runs["status"] == "ok"].to_dict("records"):
        f = open_run(run_dir(sweep_dir, r["run_id"])).frames
        f = f.assign(result_age_s=result_age_s(f), family=r.get("family"), scheme=r[label])
        parts.append(f[["family", "scheme", "pa", "miou", "delay_s", "result_age_s"]])
    if not parts:
        return pd.DataFrame(columns=["family", "scheme", "pa", "miou", "delay_s",
                                     "result_age_s"])
    return pd.concat(parts, ignore_index=True)


def binding_kbps(profiles: str | Path, video: str | None = None) -> float:
    """The mean bitrate of the most expensive profiled configuration (of `video`, if given):
    below it the link binds (the tuner cannot have everything)."""
    df = pd.read_csv(profiles)
    if video is not None:
        df = df[df["video"] == video]
    if df.empty:
        raise ValueError(f"{profiles}: no profile rows" + (f" of {video!r}" if video else ""))
    return float(df.groupby(["B", "fps"])["bitrate_kbps"].mean().max())


def floor_kbps(profiles: str | Path, video: str | None = None) -> float:
    """The mean bitrate of the cheapest profiled configuration (of `video`, if given): below
    it no configuration fits the link."""
    df = pd.read_csv(profiles)
    if video is not None:
        df = df[df["video"] == video]
    if df.empty:
        raise ValueError(f"{profiles}: no profile rows" + (f" of {video!r}" if video else ""))
    return float(df.groupby(["B", "fps"])["bitrate_kbps"].mean().min())


def best_fixed(table: pd.DataFrame, by: Sequence[str] = ("segment",),
               knob: str = "B") -> pd.DataFrame:
    """Per group (a trace segment), the fixed (knob, fps) run with the highest mean PA:
    the best single configuration in hindsight."""
    ok = table.dropna(subset=["pa"])
    idx = ok.groupby(list(by))["pa"].idxmax()
    return ok.loc[idx, [*by, knob, "fps", "pa", "overshoot_frac", "delay_mean",
                        "age_mean"]].reset_index(drop=True)


def plot_family_distributions(frames: pd.DataFrame, metrics: Sequence[str] =
                              ("pa", "delay_s", "result_age_s")):
    """Fig. 12 analogue: per trace family (columns) and metric (rows), the distribution of
    the per-frame metric for each scheme (box plots). `frames`: concatenated frames.csv
    rows with `family` and `scheme` columns. Returns the Figure."""
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(frames["family"]))
    schemes = list(dict.fromkeys(frames["scheme"]))
    fig, axes = plt.subplots(len(metrics), len(families), squeeze=False,
                             figsize=(3.2 * len(families), 2.6 * len(metrics)))
    for i, metric in enumerate(metrics):
        for j, fam in enumerate(families):
            ax = axes[i][j]
            sub = frames[frames["family"] == fam]
            data = [sub.loc[sub["scheme"] == s, metric].dropna().to_numpy() for s in schemes]
            ax.boxplot([d if d.size else np.array([np.nan]) for d in data], showfliers=False)
            ax.set_xticks(range(1, len(schemes) + 1), schemes, rotation=30, fontsize=8)
            if i == 0:
                ax.set_title(fam)
            if j == 0:
                ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_trajectory(seconds: pd.DataFrame, title: str = ""):
    """Fig. 13 analogue: bandwidth and bitrate, then each knob (B, fps...), then PA, per
    second of one run (its seconds.csv). Returns the Figure."""
    import matplotlib.pyplot as plt

    from stac.results import knob_columns

    knobs = knob_columns(seconds)
    fig, axes = plt.subplots(2 + len(knobs), 1, sharex=True,
                             figsize=(8, 1.7 * (2 + len(knobs))))
    t = seconds["second"]
    ax = axes[0]
    ax.step(t, seconds["bandwidth_kbps"], where="post", label="bandwidth", color="k")
    ax.step(t, seconds["bitrate_kbps"], where="post", label="bitrate", color="C0")
    if "bandwidth_estimate_kbps" in seconds:
        ax.step(t, seconds["bandwidth_estimate_kbps"], where="post", label="estimate",
                color="C1", ls="--", lw=0.8)
    ax.set_ylabel("kbps")
    ax.legend(fontsize=7, ncol=3)
    for ax, k in zip(axes[1:], knobs, strict=False):
        ax.step(t, seconds[k], where="post", color="C2")
        ax.set_ylabel(k)
    axes[-1].plot(t, seconds["pa"], color="C3")
    axes[-1].set_ylabel("PA")
    axes[-1].set_xlabel("second")
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig


def fps_curves(profiles: pd.DataFrame) -> pd.DataFrame:
    """Fig. 15c data: per video, fps and B, the mean PA, mIoU and bitrate over the profiled
    seconds (rows of a profiles CSV, every row kept)."""
    return (profiles.groupby(["video", "fps", "B"])
            .agg(kbps=("bitrate_kbps", "mean"), pa=("pa", "mean"), miou=("miou", "mean"),
                 seconds=("second", "size"))
            .reset_index())


def plot_fps_curves(curves: pd.DataFrame, metric: str = "pa"):
    """Fig. 15c analogue: accuracy against bitrate, one line per fps (B along each line),
    one panel per video. Returns the Figure."""
    import matplotlib.pyplot as plt

    videos = list(dict.fromkeys(curves["video"]))
    fig, axes = plt.subplots(1, len(videos), squeeze=False, figsize=(4.5 * len(videos), 3.4))
    for ax, video in zip(axes[0], videos, strict=True):
        sub = curves[curves["video"] == video]
        for fps, line in sub.groupby("fps"):
            line = line.sort_values("kbps")
            ax.plot(line["kbps"], line[metric], marker="o", ms=3, label=f"{fps:g} fps")
        ax.set_xscale("log")
        ax.set_xlabel("bitrate (kbps)")
        ax.set_ylabel(metric)
        ax.set_title(video)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_bars(table: pd.DataFrame, metric: str = "pa", by: str = "family",
              hue: str = "tuner"):
    """Fig. 16 analogue: the mean `metric` per `by` (trace family) and `hue` (tuner or
    scheme), as grouped bars. Returns the Figure."""
    import matplotlib.pyplot as plt

    means = table.groupby([by, hue], sort=False)[metric].mean().unstack(hue)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(means), 3.2))
    means.plot.bar(ax=ax, rot=0, width=0.8)
    lo = np.nanmin(means.to_numpy())
    ax.set_ylim(max(0.0, lo - 0.1), None)
    ax.set_ylabel(f"mean {metric}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
