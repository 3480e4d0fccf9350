"""Reading results back: a sweep's runs table, and one run's frames, seconds and summary.

Notebooks and figure scripts read results only through these functions. A run folder is
any folder `stac-sim run --out` or a sweep (``DIR/runs/<run_id>``) wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from stac.experiment.runs import run_dir
from stac.experiment.sweep import RUNS_CSV, tidy


class ResultsError(FileNotFoundError):
    """A results folder or run folder that is missing or incomplete (names the path)."""


@dataclass(frozen=True)
class RunResult:
    """One run's outputs: its folder, summary.json, frames.csv and seconds.csv."""

    path: Path
    summary: dict[str, Any]
    frames: pd.DataFrame
    seconds: pd.DataFrame

    @property
    def timeline(self) -> Path:
        """The run's timeline.png."""
        return self.path / "timeline.png"


def load_runs(out: str | Path) -> pd.DataFrame:
    """The runs table of the sweep folder `out` (out/runs.csv), one row per run."""
    path = Path(out) / RUNS_CSV
    if not path.is_file():
        raise ResultsError(f"{path}: no runs table (run `stac-sim sweep SPEC --out {out}`)")
    return tidy(pd.read_csv(path, keep_default_na=False, na_values=[""]))


def open_run(path: str | Path) -> RunResult:
    """One run folder (written by `stac-sim run` or by a sweep) as a `RunResult`."""
    path = Path(path)
    missing = [n for n in ("summary.json", "frames.csv", "seconds.csv")
               if not (path / n).is_file()]
    if missing:
        raise ResultsError(f"{path}: not a finished run folder (missing {', '.join(missing)})")
    return RunResult(path=path, summary=json.loads((path / "summary.json").read_text()),
                     frames=pd.read_csv(path / "frames.csv"),
                     seconds=pd.read_csv(path / "seconds.csv"))


def load_run(out: str | Path, run_id: str) -> RunResult:
    """Run `run_id` of the sweep folder `out`."""
    return open_run(run_dir(out, run_id))


def load_frames(out: str | Path, run_id: str) -> pd.DataFrame:
    """frames.csv of run `run_id` of the sweep folder `out` (one row per captured frame)."""
    return load_run(out, run_id).frames


def load_seconds(out: str | Path, run_id: str) -> pd.DataFrame:
    """seconds.csv of run `run_id` of the sweep folder `out` (one row per second)."""
    return load_run(out, run_id).seconds
