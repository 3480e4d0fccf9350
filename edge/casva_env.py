"""CASVA's per-segment tables and the fast environment its policy trains in (Pensieve-style).

The tables hold, for every video second and every (resolution scale, fps, QP) of the grid,
the bitrate of the real x264 bytes and the accuracy (PA against the model's raw-frame
output, scored at full resolution), measured by `stac-sim casva profile`. `CasvaEnv`
replays bandwidth traces against them, many episodes at once (vectorised numpy): per 1 s
segment the agent picks grid indices, the segment's bits queue on the link, and the reward
is CASVA's: accuracy minus a penalty on delay beyond the segment length minus a penalty per
dropped keyframe. A side table holds CASVA's content indicator per video second: the
kilobits of the second's first frame pre-encoded at the reference configuration
(`device.offload.pre_encode_kbits`, the same function the device runs).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.profiles import ProfileError, full_seconds

#: the grid: resolution scales (of the 480-pixel-wide clip), keyframe rates, x264 QPs
SCALES = (1.0, 0.75, 0.5)
FPS = (2.0, 5.0, 10.0)
QPS = (24, 30, 36, 42)
TABLE_COLUMNS = ("video", "second", "scale", "fps", "qp", "pa", "miou", "bitrate_kbps")
PRE_COLUMNS = ("video", "second", "pre_kbits")
#: the shipped side table of the shipped tables' clips (`stac-sim casva pre-encode`)
PRE_ENCODING = Path(__file__).resolve().parent / "checkpoints" / "casva_pre_encoding.csv"


@dataclass(frozen=True)
class Tables:
    """Per-segment tables: `bits[v, s, r, f, q]` (kbps) and `pa[v, s, r, f, q]` for video
    v (`videos`), second s (`seconds[v]` valid ones; the rest repeat the last), and grid
    indices r, f, q into `scales`, `fps`, `qps`."""

    videos: tuple[str, ...]
    seconds: tuple[int, ...]
    scales: tuple[float, ...]
    fps: tuple[float, ...]
    qps: tuple[int, ...]
    bits: np.ndarray
    pa: np.ndarray
    pre: np.ndarray | None = None  # (videos, seconds) kbits of the reference pre-encoding

    @property
    def actions(self) -> int:
        return len(self.scales) * len(self.fps) * len(self.qps)

    def unravel(self, action: np.ndarray | int) -> tuple:
        """(r, f, q) grid indices of flat action index/indices."""
        return np.unravel_index(action, (len(self.scales), len(self.fps), len(self.qps)))

    def knobs(self, action: int) -> dict[str, float]:
        """The scheme knobs {scale, fps, qp} of a flat action index."""
        r, f, q = (int(i) for i in self.unravel(action))
        return {"scale": self.scales[r], "fps": self.fps[f], "qp": float(self.qps[q])}

    def mean_bits(self) -> np.ndarray:
        """Mean bitrate per action over every video second (a content reference)."""
        return np.array([self.bits[v, :n].reshape(n, -1).mean(0) for v, n in
                         enumerate(self.seconds)]).mean(0)


    def pre_ref(self) -> float:
        """The mean reference pre-encoding over every video second (1 without `pre`): the
        video-independent scale of the content indicator log(pre / pre_ref)."""
        if self.pre is None:
            return 1.0
        return float(np.concatenate([self.pre[v, :n] for v, n in enumerate(self.seconds)])
                     .mean())


def write_pre_encoding(seconds: dict[str, dict[int, float]], path: str | Path) -> Path:
    """Write {video: {second: kbits}} of the reference pre-encoding as a CSV (PRE_COLUMNS)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PRE_COLUMNS)
        for video in sorted(seconds):
            for second in sorted(seconds[video]):
                w.writerow([video, second, repr(float(seconds[video][second]))])
    return path


def _read_csv(path: Path, what: str, columns: Sequence[str]):
    """The CSV at `path` as a DataFrame; ProfileError naming the file if it cannot be read
    or lacks one of `columns`."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise ProfileError(f"cannot read {what} {path}: {e}") from None
    if missing := set(columns) - set(df.columns):
        raise ProfileError(f"{path}: missing columns {sorted(missing)}")
    return df


def read_pre_encoding(path: str | Path, videos: Sequence[str], seconds: Sequence[int]
                      ) -> np.ndarray:
    """(videos, max seconds) kbits of a pre-encoding CSV for the tables' videos and seconds
    (the rest repeat the last); ProfileError naming the file if one is missing."""
    path = Path(path)
    df = _read_csv(path, "CASVA pre-encoding table", PRE_COLUMNS)
    pre = np.full((len(videos), max(seconds)), np.nan)
    for v, (video, n) in enumerate(zip(videos, seconds, strict=True)):
        rows = df[(df["video"] == video) & (df["second"] < n)]
        pre[v, rows["second"].to_numpy(int)] = rows["pre_kbits"].to_numpy(float)
        if np.isnan(pre[v, :n]).any() or not (pre[v, :n] > 0).all():
            raise ProfileError(f"{path}: video {video} lacks a positive pre_kbits for some "
                               f"of its seconds 0..{n - 1}")
        pre[v, n:] = pre[v, n - 1]
    return pre


def tables_from_runs(run_dirs: Iterable[str | Path]) -> list[dict]:
    """Table rows of finished fixed-configuration `casva` runs: one per full second with an
    accuracy, keyed by all three of CASVA's knobs (a `ProfileRow` has one knob and fps)."""
    out = []
    for d in run_dirs:
        summary, full = full_seconds(d, ("scale", "fps", "qp", "pa", "miou", "bitrate_kbps"))
        for r in full.itertuples():
            out.append({"video": summary["video_name"], "second": int(r.second),
                        "scale": float(r.scale), "fps": float(r.fps), "qp": int(r.qp),
                        "pa": float(r.pa), "miou": float(r.miou),
                        "bitrate_kbps": float(r.bitrate_kbps)})
    return out


def write_tables(rows: Sequence[dict], path: str | Path) -> Path:
    """Write table rows as a CSV (`TABLE_COLUMNS`), sorted."""
    path = Path(path)
    rows = sorted(rows, key=lambda r: tuple(r[c] for c in TABLE_COLUMNS[:5]))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: repr(r[c]) if isinstance(r[c], float) else r[c]
                        for c in TABLE_COLUMNS})
    return path


def read_tables(path: str | Path, pre_encoding: str | Path | None = PRE_ENCODING) -> Tables:
    """The tables of a CSV, with the pre-encoding side table `pre_encoding` (None: none);
    ProfileError naming the file if a grid cell or a video second is missing."""
    path = Path(path)
    df = _read_csv(path, "CASVA tables", TABLE_COLUMNS)
    videos = tuple(str(v) for v in sorted(df["video"].unique()))
    scales = tuple(float(v) for v in sorted(df["scale"].unique(), reverse=True))
    fps = tuple(float(v) for v in sorted(df["fps"].unique()))
    qps = tuple(int(q) for q in sorted(df["qp"].unique()))
    seconds = tuple(int(df[df["video"] == v]["second"].max()) + 1 for v in videos)
    shape = (len(videos), max(seconds), len(scales), len(fps), len(qps))
    bits, pa = np.full(shape, np.nan), np.full(shape, np.nan)
    idx = (df["video"].map(videos.index), df["second"],
           df["scale"].map(scales.index), df["fps"].map(fps.index), df["qp"].map(qps.index))
    bits[idx] = df["bitrate_kbps"].to_numpy()
    pa[idx] = df["pa"].to_numpy()
    for v, n in enumerate(seconds):
        if np.isnan(bits[v, :n]).any():
            raise ProfileError(f"{path}: video {videos[v]} lacks some (second, scale, fps, qp)")
        bits[v, n:], pa[v, n:] = bits[v, n - 1], pa[v, n - 1]
    pre = None if pre_encoding is None else read_pre_encoding(pre_encoding, videos, seconds)
    return Tables(videos, seconds, scales, fps, qps, bits, pa, pre)


# --- traces -------------------------------------------------------------------------------

#: trace families of the data root and their formats (docs/traces.md)
FAMILIES = {"lte-mahimahi": ("mahimahi", "*LTE*"), "fcc": ("cooked", "*.log"),
            "3g-norway": ("cooked", "norway_*"), "wifi": ("iperf", "*.txt")}
#: traces are for full-HD streams (the paper's 2048x1040); at 480x270 the stream needs the
#: pixel ratio of that bandwidth (issue 12's rule for choosing `--trace-scale`)
TRACE_SCALE = (480 * 270) / (2048 * 1040)


@dataclass(frozen=True)
class SecondTrace:
    """One real trace as bandwidth per second (kbps, scaled), with its family and name."""

    family: str
    name: str
    kbps: np.ndarray


def per_second(trace, scale: float = TRACE_SCALE) -> np.ndarray:
    """Mean bandwidth of every whole second of a `stac.traces.Trace`, times `scale`."""
    n = int(trace.duration)
    t = np.arange(n + 1, dtype=np.float64)
    return np.diff(trace.cumulative_bits(t)) / 1000.0 * scale


def load_families(root: str | Path, scale: float = TRACE_SCALE,
                  min_seconds: int = 60) -> list[SecondTrace]:
    """Every trace of the families under `root` at least `min_seconds` long, per second."""
    from stac.traces import import_trace

    root = Path(root)
    out = []
    for family, (fmt, pattern) in FAMILIES.items():
        files = sorted((root / family).glob(pattern))
        if not files:
            raise ProfileError(f"no {pattern} traces in {root / family}")
        for path in files:
            kbps = per_second(import_trace(path, fmt), scale)
            if len(kbps) >= min_seconds:
                out.append(SecondTrace(family, path.name, kbps))
    return out


def recording(name: str) -> str:
    """The recording a trace file belongs to: FCC's parts (``_partN``) and a Mahimahi
    trace's two directions (``.up``, ``.down``) are one recording."""
    return re.sub(r"(_part\d+)?(\.log|\.up|\.down)?$", "", name)


def split_traces(traces: Sequence[SecondTrace], every: int = 5
                 ) -> tuple[list[SecondTrace], list[SecondTrace]]:
    """Family-stratified (train, validation): in each family, its recordings sorted by
    name, every `every`-th recording (from the `every`-th on; at least one per family) is
    held out with all its files, so no recording is on both sides."""
    train, val = [], []
    for family in dict.fromkeys(t.family for t in traces):
        members = [t for t in traces if t.family == family]
        recs = sorted({recording(t.name) for t in members})
        held = {recs[i] for i in range(every - 1, len(recs), every)} or {recs[-1]}
        for t in members:
            (val if recording(t.name) in held else train).append(t)
    return train, val


# --- the environment ----------------------------------------------------------------------

#: reward of one segment (CASVA): PA - DELAY_PENALTY x (delay beyond the segment, s)
#: - DROP_PENALTY x (dropped keyframes)
DELAY_PENALTY = 0.5
DROP_PENALTY = 0.02
#: bits queued beyond this many seconds of the link's rate are dropped (the device's buffer)
MAX_QUEUE_S = 4.0
#: past bandwidth samples in the state
WINDOW = 8
REF_KBPS = 100.0  # the log-scale reference of bandwidths and sizes
STATE_DIM = WINDOW + 3 + 4
#: the state of policies trained before the pre-encoding indicator (its first columns)
STATE_DIM_V1 = WINDOW + 3 + 3


def observe(window: np.ndarray, prev: np.ndarray, delay: np.ndarray, bits: np.ndarray,
            content: np.ndarray, grid: tuple[int, int, int],
            pre: np.ndarray | None = None) -> np.ndarray:
    """The policy's state (n, STATE_DIM): the log bandwidth samples (oldest first), the
    previous grid indices scaled to [0, 1], the last segment's delay (s, clipped at 4),
    log size, content indicator from encoding (log of its size over the grid cell's mean
    size) and CASVA's pre-encoding indicator `pre` (log of the reference pre-encoding's
    size over its mean, `Tables.pre_ref`; 0 when unknown)."""
    pre = np.zeros(len(prev)) if pre is None else pre
    win = np.log(np.maximum(window, 1.0) / REF_KBPS) / 2.0
    idx = prev / np.maximum(np.array(grid) - 1, 1)
    tail = np.stack([np.minimum(delay, 4.0) / 2.0, np.log(np.maximum(bits, 1.0) / REF_KBPS) / 2.0,
                     np.clip(content, -3, 3), np.clip(pre, -3, 3)], axis=1)
    return np.concatenate([win, idx, tail], axis=1).astype(np.float32)


class CasvaEnv:
    """`n` episodes of `horizon` segments at once: each a random training trace window and
    a random clip (looped over its seconds after the first, whose bits include the IDR),
    replayed against the tables. `step(actions)` takes (n, 3) grid indices."""

    def __init__(self, tables: Tables, traces: Sequence[SecondTrace], n: int, horizon: int,
                 rng: np.random.Generator) -> None:
        self.tables, self.n, self.horizon, self.rng = tables, n, horizon, rng
        self.traces = [t.kbps for t in traces if len(t.kbps) >= horizon + WINDOW]
        if not self.traces:
            raise ValueError(f"no trace is {horizon + WINDOW} s long")
        self.grid = (len(tables.scales), len(tables.fps), len(tables.qps))
        flat = tables.bits.reshape(tables.bits.shape[:2] + (-1,))
        steady = np.array([np.median(flat[v, 1:n], axis=0) for v, n in enumerate(tables.seconds)])
        self.idr_extra = np.maximum(flat[:, 0] - steady, 0.0)  # bits of a new stream's IDR
        self.mean_bits = tables.mean_bits()
        self.pre_ref = tables.pre_ref()

    def reset(self, bandwidth: np.ndarray | None = None, video: np.ndarray | None = None,
              start: np.ndarray | None = None) -> np.ndarray:
        """New episodes (random unless `bandwidth` (n, WINDOW + horizon), `video` and
        video `start` seconds are given); returns the first state."""
        if bandwidth is None:
            picks = self.rng.integers(len(self.traces), size=self.n)
            rows = []
            for p in picks:
                kbps = self.traces[p]
                s = self.rng.integers(len(kbps) - self.horizon - WINDOW + 1)
                rows.append(kbps[s:s + WINDOW + self.horizon])
            bandwidth = np.array(rows)
        self.bw = np.asarray(bandwidth, dtype=np.float64)
        n = len(self.bw)
        secs = np.array(self.tables.seconds)
        self.video = self.rng.integers(len(secs), size=n) if video is None else np.asarray(video)
        self.vstart = (self.rng.integers(secs[self.video] - 1) if start is None
                       else np.asarray(start))
        self.t = 0
        self.prev = np.zeros((n, 3), dtype=np.int64)  # the start: the top of each list
        self.backlog = np.zeros(n)
        self.last_bits = np.zeros(n)
        self.last_kf = np.ones(n)
        self.est_backlog = np.zeros(n)
        return observe(self.bw[:, :WINDOW], self.prev, np.zeros(n), np.full(n, REF_KBPS),
                       np.zeros(n), self.grid)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """One segment for every episode: (next state, reward, info with pa, bits, bw,
        delay beyond the segment, dropped keyframes, over (bits > bandwidth))."""
        tb = self.tables
        a = np.asarray(actions, dtype=np.int64)
        secs = np.array(tb.seconds)[self.video]
        s = 1 + (self.vstart + self.t) % (secs - 1)
        flat = np.ravel_multi_index(a.T, self.grid)
        bits = tb.bits[self.video, s, a[:, 0], a[:, 1], a[:, 2]].copy()
        pa = tb.pa[self.video, s, a[:, 0], a[:, 1], a[:, 2]]
        fps = np.array(tb.fps)[a[:, 1]]
        change = (a != self.prev).any(axis=1)
        if self.t == 0:
            change[:] = True
        bits[change] += self.idr_extra[self.video[change], flat[change]]
        # a new configuration discards what is still queued (§VII)
        per_frame = np.maximum(self.last_bits / self.last_kf, 1e-9)
        dropped = np.where(change, self.backlog / per_frame, 0.0)
        backlog = np.where(change, 0.0, self.backlog)
        bw = self.bw[:, WINDOW + self.t]
        total = backlog + bits
        delay = np.clip(total / np.maximum(bw, 1e-6) - 1.0, 0.0, MAX_QUEUE_S)
        backlog = np.maximum(total - bw, 0.0)
        cap = MAX_QUEUE_S * bw
        over_cap = np.maximum(backlog - cap, 0.0)
        dropped += over_cap / np.maximum(bits / fps, 1e-9)
        backlog -= over_cap
        reward = pa - DELAY_PENALTY * delay - DROP_PENALTY * dropped
        info = {"pa": pa, "bits": bits, "bw": bw, "delay": delay, "dropped": dropped,
                "over": bits > bw}
        # what the tuner sees next: past bandwidth samples, its own decision, the segment's
        # size and estimated delay (queue estimate from sizes and samples), content
        self.est_backlog = np.where(change, 0.0, self.est_backlog)
        est_delay = (self.est_backlog + bits) / np.maximum(bw, 1e-6)
        self.est_backlog = np.maximum(self.est_backlog + bits - bw, 0.0)
        content = np.log(np.maximum(bits, 1e-3) / self.mean_bits[flat])
        # the device's content of the second just sent: its first frame pre-encoded
        pre = (np.zeros(len(a)) if tb.pre is None
               else np.log(tb.pre[self.video, s] / self.pre_ref))
        self.prev, self.backlog, self.last_bits, self.last_kf = a, backlog, bits, fps
        self.t += 1
        state = observe(self.bw[:, self.t:self.t + WINDOW], a, est_delay, bits, content,
                        self.grid, pre)
        return state, reward, info
