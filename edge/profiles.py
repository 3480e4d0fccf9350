"""Per-second profiles and the tuner's labels (STAC §VI, offline stage), and STAC-offline.

A profile row is one second of one video streamed under one fixed configuration: its
accuracy, the bitrate of its real bytes and its content (c, d). §VI drops dominated rows
(in the same second, another configuration is at least as accurate for at most the bits)
and labels every pair (row at t-1, second t of the same video) under a bandwidth with the
best configuration at t that fits it, as scaling factors of the configuration at t-1:
alpha = B_t / B_{t-1}, beta = fps_t / fps_{t-1}. `OfflineTuner` is the paper's STAC-offline
(Fig. 16): the lookup itself, on the profiled second whose content is nearest.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from edge.tuner import Tuner, changed
from stac.protocol import Config, Content


class ProfileError(ValueError):
    """A profile file or run directory that cannot be read as profile rows."""


@dataclass(frozen=True)
class ProfileRow:
    """One second of `video` under the fixed configuration (B, fps): accuracy (pa, miou),
    the bitrate of its real bytes (kbps) and its content (c, d). `B` is the scheme's
    quality knob (the loss-increment bound for `stac`)."""

    video: str
    second: int
    B: float
    fps: float
    pa: float
    miou: float
    bitrate_kbps: float
    c: float
    d: float
    model: str = ""
    seed: int = 0
    scheme: str = ""


COLUMNS = tuple(f.name for f in fields(ProfileRow))
OPTIONAL = ("scheme",)  # columns older profile files lack (read as "")


def write_profiles(rows: Iterable[ProfileRow], path: str | Path) -> Path:
    """Write `rows` as a CSV (one column per `ProfileRow` field)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for row in rows:
            w.writerow([repr(v) if isinstance(v, float) else v for v in asdict(row).values()])
    return path


def read_profiles(path: str | Path) -> list[ProfileRow]:
    """The rows of a profile CSV; ProfileError naming the file and what is wrong."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = set(COLUMNS) - set(OPTIONAL) - set(reader.fieldnames or ())
            if missing:
                raise ProfileError(f"{path}: missing columns {sorted(missing)}")
            rows = []
            for n, rec in enumerate(reader, start=2):
                try:
                    rows.append(ProfileRow(
                        video=rec["video"], second=int(rec["second"]), B=float(rec["B"]),
                        fps=float(rec["fps"]), pa=float(rec["pa"]), miou=float(rec["miou"]),
                        bitrate_kbps=float(rec["bitrate_kbps"]), c=float(rec["c"]),
                        d=float(rec["d"]), model=rec["model"], seed=int(rec["seed"]),
                        scheme=rec.get("scheme") or ""))
                except ValueError as e:
                    raise ProfileError(f"{path}, line {n}: {e}") from None
    except OSError as e:
        raise ProfileError(f"cannot read profiles {path}: {e}") from None
    if not rows:
        raise ProfileError(f"{path}: no profile rows")
    return rows


def full_seconds(run_dir: str | Path, columns: Iterable[str] = ()) -> tuple[dict, Any]:
    """A finished run's summary and the rows of its seconds.csv that a profile may use:
    full seconds with an accuracy (a partial last second is not a profile second).
    ProfileError names the run when it is not finished or lacks one of `columns`."""
    import pandas as pd

    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        seconds = pd.read_csv(run_dir / "seconds.csv")
    except (OSError, ValueError) as e:
        raise ProfileError(f"{run_dir}: not a finished run ({e})") from None
    for col in columns:
        if col not in seconds.columns:
            raise ProfileError(f"{run_dir}/seconds.csv has no column {col!r}")
    full = seconds[(seconds["second"] + 1 <= summary["video_s"] + 1e-9)
                   & seconds["pa"].notna()]
    return summary, full


def rows_from_run(run_dir: str | Path, knob: str = "B") -> list[ProfileRow]:
    """Profile rows of one finished fixed-configuration run (its summary.json and
    seconds.csv): one row per full second with an accuracy. c and d are NaN for a scheme
    whose device measures no content (h264, jpeg: plain offloading)."""
    summary, full = full_seconds(run_dir, (knob, "fps", "pa", "miou", "bitrate_kbps", "c", "d"))
    video = summary.get("video_name", summary.get("video", ""))
    return [ProfileRow(video=str(video), second=int(r["second"]), B=float(r[knob]),
                       fps=float(r["fps"]), pa=float(r["pa"]), miou=float(r["miou"]),
                       bitrate_kbps=float(r["bitrate_kbps"]), c=float(r["c"]),
                       d=float(r["d"]), model=str(summary.get("model", "")),
                       seed=int(summary.get("seed", 0)),
                       scheme=str(summary.get("scheme", "")))
            for _, r in full.iterrows()]


def _groups(rows: Iterable[ProfileRow]) -> dict[tuple[str, int], list[ProfileRow]]:
    """Rows by (video, second)."""
    out: dict[tuple[str, int], list[ProfileRow]] = {}
    for row in rows:
        out.setdefault((row.video, row.second), []).append(row)
    return out


def drop_dominated(rows: Iterable[ProfileRow]) -> list[ProfileRow]:
    """The rows no other configuration of the same video second dominates (§VI: at least
    as accurate (PA) for at most the bitrate, strictly better in one)."""
    keep = []
    for group in _groups(rows).values():
        for r in group:
            if not any(o.pa >= r.pa and o.bitrate_kbps <= r.bitrate_kbps
                       and (o.pa > r.pa or o.bitrate_kbps < r.bitrate_kbps) for o in group):
                keep.append(r)
    return keep


def best_under(rows: Sequence[ProfileRow], bandwidth_kbps: float) -> ProfileRow:
    """The most accurate row whose bitrate fits `bandwidth_kbps`; the cheapest if none does
    (ties: fewer bits, then the smaller configuration)."""
    fits = [r for r in rows if r.bitrate_kbps <= bandwidth_kbps]
    if not fits:
        return min(rows, key=lambda r: (r.bitrate_kbps, r.B, r.fps))
    return max(fits, key=lambda r: (r.pa, -r.bitrate_kbps, -r.B, -r.fps))


def label_bandwidths(rows: Sequence[ProfileRow]) -> list[float]:
    """Bandwidths at which every non-dominated row of one second is the best once: each
    row's own bitrate, the geometric midpoint to the next, and half the cheapest."""
    bits = sorted({r.bitrate_kbps for r in drop_dominated(rows)})
    out = [bits[0] / 2]
    for lo, hi in zip(bits, bits[1:] + [bits[-1] * 2], strict=True):
        out += [lo, math.sqrt(lo * hi)]
    return out


@dataclass(frozen=True)
class Example:
    """One training pair of §VI: the network's inputs and the label (alpha, beta)."""

    video: str
    bitrate_prev: float  # Bit_{t-1}, kbps
    bandwidth: float  # Bit^_t, kbps
    B_prev: float
    fps_prev: float
    c_prev: float
    d_prev: float
    alpha: float  # B_t / B_{t-1}
    beta: float  # fps_t / fps_{t-1}


def make_labels(rows: Iterable[ProfileRow]) -> list[Example]:
    """§VI labels: for every row at t-1 and every sampled bandwidth of second t of the same
    video, the best configuration at t under that bandwidth as scaling factors."""
    groups = _groups(drop_dominated(rows))
    examples = []
    for (video, second), now in sorted(groups.items()):
        before = groups.get((video, second - 1))
        if before is None:
            continue
        for w in label_bandwidths(now):
            best = best_under(now, w)
            for p in before:
                examples.append(Example(video=video, bitrate_prev=p.bitrate_kbps, bandwidth=w,
                                        B_prev=p.B, fps_prev=p.fps, c_prev=p.c, d_prev=p.d,
                                        alpha=best.B / p.B, beta=best.fps / p.fps))
    return examples


class OfflineTuner(Tuner):
    """STAC-offline (Fig. 16): in the profiled second whose content (c, d) is nearest the
    last second's, the row with the highest PA whose bitrate fits the estimate. Without
    content (a scheme whose device measures none, h264; or a profile without it), the
    lookup is in each configuration's mean over every profiled second (`pooled`)."""

    name = "offline"

    def __init__(self, rows: Sequence[ProfileRow]) -> None:
        groups = _groups(drop_dominated(rows))
        if not groups:
            raise ProfileError("the offline tuner needs profile rows")
        self.groups = list(groups.values())
        cd = np.array([[g[0].c, g[0].d] for g in self.groups], dtype=np.float64)
        self.content = cd
        self.has_content = bool(np.isfinite(cd).all())
        std = cd.std(0) if self.has_content else np.ones(2)
        self.scale = np.where(std > 0, std, 1.0)
        self.pooled = pooled(rows)

    def lookup(self, content: Content | None, bandwidth_kbps: float) -> ProfileRow:
        """The row the tuner picks for `content` under `bandwidth_kbps`."""
        if content is None or not self.has_content \
                or not (math.isfinite(content.c) and math.isfinite(content.d)):
            return best_under(self.pooled, bandwidth_kbps)
        dist = (((self.content - [content.c, content.d]) / self.scale) ** 2).sum(1)
        return best_under(self.groups[int(np.argmin(dist))], bandwidth_kbps)

    def step(self, second: int, bitrate_kbps: float, bandwidth_kbps: float, config: Config,
             content: Content | None) -> Config | None:
        """The looked-up configuration; None without an estimate."""
        if not math.isfinite(bandwidth_kbps):
            return None
        row = self.lookup(content, bandwidth_kbps)
        return changed(config, second, {quality_knob(config): row.B, "fps": row.fps})


def pooled(rows: Iterable[ProfileRow]) -> list[ProfileRow]:
    """One row per configuration (B, fps): its mean PA, mIoU and bitrate over every profiled
    second (video "*", second -1, content NaN), for lookups without content."""
    by_config: dict[tuple[float, float], list[ProfileRow]] = {}
    for r in rows:
        by_config.setdefault((r.B, r.fps), []).append(r)
    return [ProfileRow(video="*", second=-1, B=b, fps=fps,
                       pa=float(np.mean([r.pa for r in rs])),
                       miou=float(np.mean([r.miou for r in rs])),
                       bitrate_kbps=float(np.mean([r.bitrate_kbps for r in rs])),
                       c=math.nan, d=math.nan, model=rs[0].model, seed=rs[0].seed,
                       scheme=rs[0].scheme)
            for (b, fps), rs in sorted(by_config.items())]


def quality_knob(config: Config) -> str:
    """The knob a profile's `B` column stands for in `config` (B for stac, else the one
    knob besides fps)."""
    names = [k for k in config.as_dict() if k != "fps"]
    if "B" in names:
        return "B"
    if len(names) != 1:
        raise ProfileError(f"cannot tell the quality knob among {names}")
    return names[0]
