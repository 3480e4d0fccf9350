"""`stac-sim profile` (STAC §VI offline stage) on a tiny campaign: every row comes from its
run's own outputs (bitrate from the real bytes of frames.csv), dominated rows are dropped
exactly, and a rerun resumes without running anything again."""

import math

import numpy as np
import pandas as pd
import pytest

from edge.profiles import read_profiles
from stac.cli import main
from stac.experiment.profiling import CampaignError, ProfileCampaign, frame_size, spec

pytestmark = pytest.mark.slow

GRID_B, GRID_FPS = (2.0, 8.0), (2.0, 5.0)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    argv = ["profile", "--out", str(out), "--values", "2,8", "--fps", "2,5", "--width", "96",
            "--duration", "2", "--source-fps", "10", "--model", "bisenet", "--workers", "1",
            "--no-progress"]
    assert main(argv) == 0
    return out, argv


def _runs(out):
    return pd.read_csv(out / "sweep" / "runs.csv")


def test_rows_are_the_grid_and_come_from_the_runs_own_bytes(campaign):
    out, _ = campaign
    rows = read_profiles(out / "profiles_all.csv")
    assert len(rows) == len(GRID_B) * len(GRID_FPS) * 2  # 2 full seconds per run
    assert {(r.B, r.fps) for r in rows} == {(b, f) for b in GRID_B for f in GRID_FPS}
    assert {(r.video, r.model, r.seed, r.scheme) for r in rows} == {("bikes", "bisenet", 0,
                                                                      "stac")}
    runs = _runs(out)
    assert (runs["status"] == "ok").all() and len(runs) == 4
    for run in runs.itertuples():
        folder = out / "sweep" / "runs" / run.run_id
        frames = pd.read_csv(folder / "frames.csv")
        seconds = pd.read_csv(folder / "seconds.csv")
        b, fps = float(seconds["B"].iloc[0]), float(seconds["fps"].iloc[0])
        sent = frames[frames["keyframe"].astype(bool) & frames["t_sent"].notna()]
        for r in (r for r in rows if (r.B, r.fps) == (b, fps)):
            in_second = sent[np.floor(sent["t_sent"]) == r.second]
            assert r.bitrate_kbps > 0
            assert math.isclose(r.bitrate_kbps, in_second["bytes"].sum() * 8 / 1000,
                                rel_tol=1e-9)
            frames_of = frames[np.floor(frames["t_capture"] + 1e-9) == r.second]
            assert math.isclose(r.pa, frames_of["pa"].mean(), rel_tol=1e-6)
            assert r.c > 0 and r.d > 0


def test_dominated_rows_are_dropped_and_only_they(campaign):
    out, _ = campaign
    every = read_profiles(out / "profiles_all.csv")
    kept = set(read_profiles(out / "profiles.csv"))

    def dominated(r):
        return any(o.second == r.second and o.pa >= r.pa and o.bitrate_kbps <= r.bitrate_kbps
                   and (o.pa > r.pa or o.bitrate_kbps < r.bitrate_kbps) for o in every)

    assert kept == {r for r in every if not dominated(r)}
    assert 0 < len(kept) <= len(every)


def test_a_rerun_resumes_without_running_again(campaign):
    out, argv = campaign
    folders = sorted((out / "sweep" / "runs").iterdir())
    stamps = {f: (f / "row.json").stat().st_mtime_ns for f in folders}
    before = (out / "profiles.csv").read_text()
    assert main(argv) == 0
    assert sorted((out / "sweep" / "runs").iterdir()) == folders
    assert {f: (f / "row.json").stat().st_mtime_ns for f in folders} == stamps
    assert (out / "profiles.csv").read_text() == before


def test_campaign_errors_and_sizes():
    with pytest.raises(CampaignError, match="cannot profile scheme"):
        ProfileCampaign("nope", (1.0,), (5.0,))
    with pytest.raises(CampaignError, match="width or a size"):
        ProfileCampaign("stac", (1.0,), (5.0,), width=96, size=(96, 64))
    assert frame_size("default", 480) == (480, 204)  # bikes 640x272
    s = spec(ProfileCampaign("h264", (20.0, 30.0), (5.0,), width=480), "/tmp/link.csv")
    assert s["base"]["tuner"] == "fixed" and s["grid"][0]["qp"] == [20.0, 30.0]
    assert s["grid"][0]["size"] == "480x204"
