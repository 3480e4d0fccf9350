"""The offline profiling stage of STAC §VI on the experiment library: a scheme over a grid of
its quality knob and fps, on videos at a given size, over a constant wide link; one profile
row per video second (edge.profiles), dominated rows dropped.

    from stac.experiment.profiling import ProfileCampaign, profile
    rows, runs = profile(ProfileCampaign("stac", (1.0, 4.0), (2.0, 5.0), ("default",),
                                         width=160), "out/profile")

Each (video, knob, fps) is one sweep run (resumable: a finished run is never run again,
`stac.experiment.sweep`); the link is a constant `kbps` trace written into the output
folder, so nothing is dropped or queued and each row's accuracy and bitrate come from
compression (and propagation) alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge.profiles import ProfileRow, drop_dominated, rows_from_run, write_profiles
from stac.experiment.runs import run_dir
from stac.experiment.sweep import sweep

#: the quality knob each profiled scheme is swept over (besides fps)
KNOBS = {"stac": "B", "stac-plus": "B", "uniform": "level", "grace": "level", "h264": "qp",
         "jpeg": "quality"}
TRACE_FILE = "link.csv"
PROFILES = "profiles.csv"  # §VI rows: dominated rows dropped
ALL_ROWS = "profiles_all.csv"  # every row (accuracy-bitrate curves per fps, Fig. 15c)


class CampaignError(ValueError):
    """A profiling campaign that cannot be set up (unknown scheme, bad grid, size)."""


@dataclass(frozen=True)
class ProfileCampaign:
    """What one campaign profiles: `scheme` over `values` of its quality knob x `fps`, on
    `videos` (paths or "default"), each resized to `width` (height keeping the aspect ratio,
    rounded to even) or to `size` (w, h); `duration` seconds (None: the whole clip)."""

    scheme: str
    values: tuple[float, ...]
    fps: tuple[float, ...]
    videos: tuple[str, ...] = ("default",)
    width: int | None = None
    size: tuple[int, int] | None = None
    duration: float | None = 10.0
    model: str | None = None  # None: the default model
    seed: int = 0
    kbps: float = 200_000.0  # the constant link: wide enough that nothing queues
    source_fps: float | None = None

    def __post_init__(self) -> None:
        if self.scheme not in KNOBS:
            raise CampaignError(f"cannot profile scheme {self.scheme!r}; profiled schemes: "
                                f"{', '.join(KNOBS)}")
        if not self.values or not self.fps or not self.videos:
            raise CampaignError("a campaign needs knob values, fps values and videos")
        if self.width is not None and self.size is not None:
            raise CampaignError("give a width or a size, not both")
        if self.width is not None and self.width < 8:
            raise CampaignError(f"width must be >= 8 pixels, got {self.width}")
        if not self.kbps > 0:
            raise CampaignError(f"the link's kbps must be > 0, got {self.kbps}")

    @property
    def knob(self) -> str:
        """The scheme's quality knob (B, level, qp or quality)."""
        return KNOBS[self.scheme]


def frame_size(video: str, width: int) -> tuple[int, int]:
    """(width, height) of `video` resized to `width`, its aspect ratio kept, height even."""
    from stac.frames import open_source

    w, h = open_source(video).size
    return width, max(2, 2 * int(round(h * width / w / 2)))


def spec(campaign: ProfileCampaign, trace: str | Path) -> dict[str, Any]:
    """The sweep spec of `campaign` over the link `trace`: one grid table per video (each at
    its own size), every run with the fixed tuner (profiles are fixed configurations)."""
    base: dict[str, Any] = {"scheme": campaign.scheme, "trace": str(Path(trace).resolve()),
                            "seed": campaign.seed, "tuner": "fixed"}
    for key in ("model", "duration", "source_fps"):
        if getattr(campaign, key) is not None:
            base[key] = getattr(campaign, key)
    grids = []
    for video in campaign.videos:
        size = campaign.size
        if campaign.width is not None:
            size = frame_size(video, campaign.width)
        video_value = video if video == "default" else str(Path(video).resolve())
        grid = {"video": video_value, campaign.knob: list(campaign.values),
                "fps": [float(f) for f in campaign.fps]}
        if size is not None:
            grid["size"] = f"{size[0]}x{size[1]}"
        grids.append(grid)
    return {"base": base, "grid": grids}


def write_link(campaign: ProfileCampaign, out: Path) -> Path:
    """The constant link of the campaign, `out/link.csv` (rewritten identically on resume)."""
    from stac.traces import Trace, save_trace

    trace = Trace(np.array([0.0]), np.array([float(campaign.kbps)]), name="constant",
                  end_s=3600.0)
    return save_trace(trace, out / TRACE_FILE,
                      comment=f"constant {campaign.kbps:g} kbps: profiling link (no queues)")


def profile(campaign: ProfileCampaign, out: str | Path, backend: str = "local",
            workers: int | None = None, address: str | None = None,
            progress: bool = True) -> tuple[list[ProfileRow], pd.DataFrame]:
    """Run (or resume) `campaign` into `out` (sweep folder `out/sweep`); write
    `out/profiles_all.csv` (every row) and `out/profiles.csv` (dominated rows dropped, §VI).
    Returns (the kept rows, the sweep's runs table)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trace = write_link(campaign, out)
    runs = sweep(spec(campaign, trace), out / "sweep", backend=backend, workers=workers,
                 address=address, progress=progress)
    rows = collect(runs, out / "sweep", campaign)
    if rows:
        write_profiles(rows, out / ALL_ROWS)
    kept = drop_dominated(rows)
    if kept:
        write_profiles(kept, out / PROFILES)
    return kept, runs


def collect(runs: pd.DataFrame, sweep_dir: Path, campaign: ProfileCampaign
            ) -> list[ProfileRow]:
    """Every profile row of the finished runs of `runs`, in the table's order."""
    rows: list[ProfileRow] = []
    for run in runs[runs["status"] == "ok"].itertuples():
        rows += rows_from_run(run_dir(sweep_dir, run.run_id), knob=campaign.knob)
    return rows


def summary_table(rows: Sequence[ProfileRow], kept: Sequence[ProfileRow]) -> pd.DataFrame:
    """Per video and configuration: seconds, mean kbps, mean PA and mIoU, rows kept (§VI)."""
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame([r.__dict__ for r in rows])
    keep = {(r.video, r.second, r.B, r.fps) for r in kept}
    df["kept"] = [(v, s, b, f) in keep for v, s, b, f in
                  zip(df["video"], df["second"], df["B"], df["fps"], strict=True)]
    return (df.groupby(["video", "B", "fps"])
            .agg(seconds=("second", "size"), kbps=("bitrate_kbps", "mean"),
                 pa=("pa", "mean"), miou=("miou", "mean"), kept=("kept", "sum"))
            .reset_index())
