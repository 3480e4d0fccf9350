"""Run outputs (DESIGN.md "Outputs"): frames.csv, seconds.csv, summary.json, timeline.png.

`RunWriter` receives the driver's records and writes CSV rows as soon as they are final,
in frame / second order, flushing each row, so a crash leaves every finished row on disk.
Missing values (no result shown yet, a keyframe never delivered) are empty cells.
The summary and the timeline are computed from the CSVs at the end, so a notebook reading
the CSVs sees exactly what they summarise. `RunFolder` makes the folder honest: a run writes
into a temporary sibling renamed to OUT only on success; a failed run leaves OUT.failed/.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stac.protocol import Config, Content

if TYPE_CHECKING:
    from stac.traces import Trace

#: frames.csv columns before the scheme's knobs (then one column per knob: B, qp, fps...)
FRAME_COLUMNS = ("frame", "t_capture", "keyframe", "bytes", "t_sent", "t_arrived", "dropped",
                 "delay_s", "result_age_frames", "pa", "miou")
#: seconds.csv columns: these, the scheme's knobs, then SECOND_TAIL
SECOND_COLUMNS = ("second", "bitrate_kbps", "bandwidth_kbps")
SECOND_TAIL = ("c", "d", "pa", "miou", "bandwidth_estimate_kbps")
PERCENTILES = (5, 50, 95)


@dataclass
class FrameRecord:
    """One row of frames.csv; keyframe fields are filled in when the uplink is done with it."""

    frame: int
    t_capture: float
    keyframe: bool = False
    bytes: int = 0
    t_sent: float = math.nan  # keyframe handed to the uplink (after the device's encode)
    t_arrived: float = math.nan  # last bit at the edge (transmission + propagation)
    dropped: bool = False
    delay_s: float = math.nan  # capture of the frame the shown result describes -> result shown
    result_age_frames: float = math.nan  # frame - index of the keyframe whose result is shown
    pa: float = math.nan
    miou: float = math.nan
    knobs: dict[str, float] = field(default_factory=dict)  # the configuration at capture
    done: bool = False  # no field will change any more


@dataclass
class SecondRecord:
    """One row of seconds.csv, minus the accuracy means the writer adds from the frames."""

    second: int
    span_s: float  # length of this second within the run (< 1 for the last one)
    bitrate_kbps: float
    bandwidth_kbps: float
    knobs: dict[str, float]  # the configuration in force at the second's start
    c: float = math.nan
    d: float = math.nan
    bandwidth_estimate_kbps: float = math.nan  # the estimator's figure for this second

    @classmethod
    def account(cls, second: int, span: float, bits_sent: float, trace: Trace,
                config: Config, content: Content | None) -> SecondRecord:
        """The row of one second: bits sent against the trace's capacity over
        [second, second + span), the configuration then in force and the content metrics."""
        return cls(second=second, span_s=span, bitrate_kbps=bits_sent / 1000.0 / span,
                   bandwidth_kbps=float(trace.bits_between(second, second + span)) / 1000.0 / span,
                   knobs=config.as_dict(),
                   c=content.c if content is not None else math.nan,
                   d=content.d if content is not None else math.nan)


class RunSink:
    """Receives records as a driver produces them (see `RunWriter`)."""

    def frame(self, record: FrameRecord) -> None:
        """A frame's record was created or changed; `record.done` says it is final."""

    def second(self, record: SecondRecord) -> None:
        """A second ended."""


FAILED_SUFFIX = ".failed"
ERROR_FILE = "error.txt"


class RunFolderError(ValueError):
    """`--out` cannot take a run: it is a file, or a non-empty folder without overwrite."""


class RunFolder:
    """The output folder of one run, written atomically (DESIGN.md "Outputs").

    ``with RunFolder(out) as tmp:`` checks `out` (not a file; an existing non-empty folder
    only with ``overwrite``), and yields a fresh temporary folder beside it (``OUT.partial-*``)
    for the run to write into. On success the temporary folder replaces `out` (and a stale
    ``OUT.failed`` is removed). On an exception nothing of `out` changes: if the run wrote
    anything, the temporary folder becomes ``OUT.failed/`` with ``error.txt`` (the exception
    and its traceback), and the exception, with ``failed_folder`` set to that path, goes on.
    """

    def __init__(self, out: str | Path, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        self.failed = self.out.with_name(self.out.name + FAILED_SUFFIX)
        self.path: Path | None = None

    def check(self) -> None:
        """Raise `RunFolderError` if `out` is a file, or non-empty without `overwrite`."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise RunFolderError(f"{out}: exists and is not a folder; --out must be a folder")
        if out.is_dir() and not self.overwrite and (names := sorted(os.listdir(out))):
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise RunFolderError(f"{out}: folder is not empty ({shown}); pass --overwrite to "
                                 "replace it, or choose another --out")
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise RunFolderError(f"{out}: {parent} is a file, not a folder")
                break

    def __enter__(self) -> Path:
        self.check()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"{self.out.name}.partial-",
                                          dir=self.out.parent))
        return self.path

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        assert self.path is not None
        if exc_type is None:
            if self.out.exists():  # checked on entry: empty, or overwrite was asked
                old = Path(tempfile.mkdtemp(prefix=f"{self.out.name}.old-", dir=self.out.parent))
                self.out.rename(old / "run")
                shutil.rmtree(old)
            self.path.rename(self.out)
            if self.failed.is_dir():
                shutil.rmtree(self.failed)
            return False
        if not any(p.is_file() for p in self.path.rglob("*")):
            shutil.rmtree(self.path)  # failed before writing anything: leave nothing behind
            return False
        (self.path / ERROR_FILE).write_text(
            "".join(traceback.format_exception(exc_type, exc, tb)))
        if self.failed.is_dir():
            shutil.rmtree(self.failed)
        self.path.rename(self.failed)
        if exc is not None:
            exc.failed_folder = self.failed  # type: ignore[attr-defined]
        return False


def failed_note(exc: BaseException) -> str:
    """Where a failed run left its partial outputs (for the command's error line), or ''."""
    folder = getattr(exc, "failed_folder", None)
    return "" if folder is None else f"\n  (partial outputs and {ERROR_FILE} in {folder}/)"


def _cell(value: Any) -> str:
    """CSV text of a value: bools as 0/1, NaN as empty, floats with 6 decimals."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6f}"


class RunWriter(RunSink):
    """Write frames.csv and seconds.csv incrementally into `out_dir`; `knobs` are the
    scheme's configuration knobs, one column each (e.g. B and fps for `stac`)."""

    def __init__(self, out_dir: str | Path, knobs: Sequence[str]) -> None:
        self.knobs = tuple(knobs)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._frames_file = open(self.out_dir / "frames.csv", "w", newline="")  # noqa: SIM115
        self._seconds_file = open(self.out_dir / "seconds.csv", "w", newline="")  # noqa: SIM115
        self._frames = csv.writer(self._frames_file)
        self._seconds = csv.writer(self._seconds_file)
        self._frames.writerow(FRAME_COLUMNS + self.knobs)
        self._seconds.writerow(SECOND_COLUMNS + self.knobs + SECOND_TAIL)
        self._frames_file.flush()
        self._seconds_file.flush()
        self._pending: dict[int, FrameRecord] = {}
        self._next: int | None = None  # next frame index to write
        self._second_recs: dict[int, SecondRecord] = {}
        self._acc: dict[int, list[list[float]]] = {}  # second -> [pa values, miou values]
        self._next_second = 0
        self._frontier = -math.inf  # capture time of the last frame written

    def frame(self, record: FrameRecord) -> None:
        """Buffer the record; write every final row that is next in frame order."""
        self._pending[record.frame] = record
        if self._next is None:
            self._next = record.frame
        while self._next in self._pending and self._pending[self._next].done:
            rec = self._pending.pop(self._next)
            self._frames.writerow([_cell(getattr(rec, c)) for c in FRAME_COLUMNS]
                                  + [_cell(rec.knobs[k]) for k in self.knobs])
            acc = self._acc.setdefault(int(math.floor(rec.t_capture + 1e-9)), [[], []])
            acc[0].append(rec.pa)
            acc[1].append(rec.miou)
            self._frontier = rec.t_capture
            self._next += 1
        self._frames_file.flush()
        self._write_seconds(final=False)

    def second(self, record: SecondRecord) -> None:
        """Buffer the second; it is written once all its frames are."""
        self._second_recs[record.second] = record
        self._write_seconds(final=False)

    def _write_seconds(self, final: bool) -> None:
        while self._next_second in self._second_recs and (
                final or self._frontier >= self._next_second + 1 - 1e-9):
            rec = self._second_recs.pop(self._next_second)
            pa, miou = self._acc.pop(self._next_second, [[], []])
            self._seconds.writerow(
                [rec.second, _cell(rec.bitrate_kbps), _cell(rec.bandwidth_kbps)]
                + [_cell(rec.knobs[k]) for k in self.knobs]
                + [_cell(rec.c), _cell(rec.d), _cell(_nanmean(pa)), _cell(_nanmean(miou)),
                   _cell(rec.bandwidth_estimate_kbps)])
            self._next_second += 1
        self._seconds_file.flush()

    def close(self) -> None:
        """Write what is left (the driver marks every record final before this)."""
        for rec in self._pending.values():
            rec.done = True
        while self._pending:  # normally contiguous; any gap is skipped over in order
            if self._next not in self._pending:
                self._next = min(self._pending)
            self.frame(self._pending[self._next])
        self._write_seconds(final=True)
        self._frames_file.close()
        self._seconds_file.close()


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if arr.size and not np.all(np.isnan(arr)) else math.nan


def _stats(series: pd.Series) -> dict[str, float | None]:
    """Mean and percentiles of a column, NaN skipped (None when nothing is left)."""
    v = series.dropna().to_numpy(dtype=np.float64)
    if v.size == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    return {"mean": float(v.mean()), **{f"p{p}": float(np.percentile(v, p)) for p in PERCENTILES}}


def versions() -> dict[str, str]:
    """Versions of the interpreter and the libraries that shape results."""
    import av
    import cv2
    import simpy
    import torch

    from stac import __version__ as stac_version

    return {"stac-sim": stac_version, "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__, "opencv": cv2.__version__,
            "av": av.__version__, "simpy": simpy.__version__, "pandas": pd.__version__}


#: a second overshoots when its bitrate exceeds the bandwidth by more than this factor
OVERSHOOT_FACTOR = 1.05


def result_age_s(frames: pd.DataFrame) -> pd.Series:
    """Per frame, the age of the result shown (s): its capture time minus the capture time
    of the keyframe whose result it shows (NaN when none is shown)."""
    t = frames.set_index("frame")["t_capture"]
    source = frames["frame"] - frames["result_age_frames"]
    return pd.Series(frames["t_capture"].to_numpy()
                     - t.reindex(source.to_numpy()).to_numpy(), index=frames.index)


def link_use(seconds: pd.DataFrame) -> pd.DataFrame:
    """Per second, overshoot (kbps of bitrate above the bandwidth, 0 if none) and
    utilisation (bitrate / bandwidth; NaN where the bandwidth is 0)."""
    bitrate, bandwidth = seconds["bitrate_kbps"], seconds["bandwidth_kbps"]
    return pd.DataFrame({"overshoot_kbps": (bitrate - bandwidth).clip(lower=0.0),
                         "utilisation": bitrate / bandwidth.where(bandwidth > 0)})


def write_summary(out_dir: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """summary.json from the CSVs plus `meta` (scheme, video, trace, model, seed, wall_s...):
    counts, and per-frame and per-second statistics, the result age and the link's use
    (overshoot, utilisation) among them (issue 12's "honest outputs")."""
    out_dir = Path(out_dir)
    frames = pd.read_csv(out_dir / "frames.csv")
    seconds = pd.read_csv(out_dir / "seconds.csv")
    frames["result_age_s"] = result_age_s(frames)
    seconds = pd.concat([seconds, link_use(seconds)], axis=1)
    over = seconds["bitrate_kbps"] > OVERSHOOT_FACTOR * seconds["bandwidth_kbps"]
    summary = dict(meta)
    summary.update({
        "frames": int(len(frames)),
        "keyframes": int(frames["keyframe"].sum()),
        "delivered": int(frames["t_arrived"].notna().sum()),
        "dropped": int(frames["dropped"].sum()),
        "frames_without_result": int(frames["pa"].isna().sum()),
        "bytes": int(frames["bytes"].sum()),
        "frame_stats": {c: _stats(frames[c]) for c in
                        ("delay_s", "result_age_frames", "result_age_s", "pa", "miou",
                         "bytes")},
        "second_stats": {c: _stats(seconds[c]) for c in
                         ("bitrate_kbps", "bandwidth_kbps", "bandwidth_estimate_kbps",
                          "overshoot_kbps", "utilisation", "pa", "miou")},
        "overshoot_seconds": {"count": int(over.sum()), "fraction":
                              float(over.mean()) if len(seconds) else None,
                              "factor": OVERSHOOT_FACTOR},
        "versions": versions(),
    })
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


def knob_columns(seconds: pd.DataFrame) -> list[str]:
    """The scheme's knob columns of a seconds.csv table (between the bandwidth and c)."""
    cols = list(seconds.columns)
    return cols[len(SECOND_COLUMNS):cols.index("c")]


def plot_timeline(out_dir: str | Path, title: str = "") -> Path:
    """timeline.png: bandwidth vs bitrate (overshoot shaded), each of the scheme's knobs
    under its own name (B, QP, level, fps...), delay and result age, and accuracy over
    time, from the CSVs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    frames = pd.read_csv(out_dir / "frames.csv")
    seconds = pd.read_csv(out_dir / "seconds.csv")
    knobs = knob_columns(seconds)
    frames["result_age_s"] = result_age_s(frames)
    fig, axes = plt.subplots(3 + len(knobs), 1, figsize=(9, 6 + 2 * len(knobs)), sharex=True)
    # each second's value holds over [second, second + 1): step plots need the right edge too
    t = np.append(seconds["second"].to_numpy(dtype=float), len(seconds))

    def steps(ax, column: str, label: str | None = None) -> None:
        v = seconds[column].to_numpy(dtype=float)
        ax.step(t, np.append(v, v[-1:]), where="post", label=label)

    ax = axes[0]
    steps(ax, "bandwidth_kbps", "bandwidth")
    steps(ax, "bitrate_kbps", "bitrate")
    bw, br = (seconds[c].to_numpy(dtype=float) for c in ("bandwidth_kbps", "bitrate_kbps"))
    bw, br = np.append(bw, bw[-1:]), np.append(br, br[-1:])
    ax.fill_between(t, bw, br, where=br > bw, step="post", color="red", alpha=0.25,
                    label="overshoot")
    ax.set_yscale("symlog", linthresh=10.0)
    ax.set_ylabel("kbps")
    ax.legend(loc="upper right", fontsize=8)
    for ax, knob in zip(axes[1:], knobs, strict=False):
        steps(ax, knob)
        ax.set_ylabel(knob)
    ax = axes[-2]
    ax.plot(frames["t_capture"], frames["delay_s"], lw=0.8, label="delay")
    ax.plot(frames["t_capture"], frames["result_age_s"], lw=0.8, label="result age")
    ax.set_ylabel("s")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[-1]
    ax.plot(frames["t_capture"], frames["pa"], lw=0.8, label="PA (frame)")
    ax.plot(frames["t_capture"], frames["miou"], lw=0.8, label="mIoU (frame)")
    ax.set_ylabel("accuracy")
    ax.set_xlabel("time (s)")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    path = out_dir / "timeline.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
