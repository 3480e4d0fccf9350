"""Adaptive runs end to end (issue 12 acceptance): `stac` with a tuner on a trace whose
bandwidth drops eightfold and comes back changes B and fps, each second's choice is the
tuner's answer to what the run book reported, and frames.csv shows the change."""

import numpy as np
import pandas as pd
import pytest
from test_tuner_net import TINY

from edge.profiles import OfflineTuner, read_profiles
from stac.protocol import Content
from stac.sim.runner import run, run_options
from stac.traces import Trace, save_trace


@pytest.fixture(autouse=True)
def setup(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))


def _run(tmp_path, tuner, estimator, summary=None):
    trace = save_trace(Trace(np.array([0.0, 2.0, 4.0]), np.array([80.0, 10.0, 80.0]),
                             end_s=7.0), tmp_path / "trace.csv", "drops and recovers")
    out = tmp_path / "out"
    result = run(run_options(dict(trace=str(trace), out=str(out), size=(96, 64), duration=6.0,
                                  source_fps=10.0, scheme="stac", tuner=tuner,
                                  estimator=estimator)))
    if summary is not None:
        summary.update(result)
    return pd.read_csv(out / "frames.csv"), pd.read_csv(out / "seconds.csv")


@pytest.mark.slow
def test_offline_tuner_follows_the_bandwidth(tmp_path):
    profiles = TINY / "profiles.csv"
    summary = {}
    frames, seconds = _run(tmp_path, f"offline:{profiles}", "oracle", summary)
    # less bandwidth (seconds 2, 3: 10 kbps) -> coarser B; more (1, 5: 80 kbps) -> finer
    assert seconds["B"][2:4].min() > seconds["B"][[1, 5]].max()
    assert len(set(zip(seconds["B"], seconds["fps"], strict=True))) >= 3
    # each second's configuration is the tuner's lookup of the previous second's content
    # under the estimate made for it (the oracle's: this second's bandwidth)
    tuner = OfflineTuner(read_profiles(profiles))
    np.testing.assert_allclose(seconds["bandwidth_estimate_kbps"][1:],
                               seconds["bandwidth_kbps"][1:])
    for s in range(len(seconds) - 1):
        row = tuner.lookup(Content(s, seconds["c"][s], seconds["d"][s]),
                           seconds["bandwidth_estimate_kbps"][s + 1])
        assert (seconds["B"][s + 1], seconds["fps"][s + 1]) == (row.B, row.fps)
    # frames.csv: each frame carries the configuration in force at its capture
    per_second = frames.groupby(np.floor(frames["t_capture"] + 1e-9).astype(int))
    assert (per_second["B"].first().to_numpy() == seconds["B"].to_numpy()).all()
    # the summary reports the age of the result shown and the link's use
    over = (seconds["bitrate_kbps"] > 1.05 * seconds["bandwidth_kbps"]).sum()
    assert summary["overshoot_seconds"]["count"] == over
    assert summary["frame_stats"]["result_age_s"]["p95"] > 0
    assert summary["second_stats"]["utilisation"]["mean"] == pytest.approx(
        (seconds["bitrate_kbps"] / seconds["bandwidth_kbps"]).mean())


@pytest.mark.slow
def test_network_tuner_with_the_realistic_estimator_adapts(tmp_path):
    _, seconds = _run(tmp_path, f"nn:{TINY / 'nn.pt'}", "harmonic")
    assert seconds["bandwidth_estimate_kbps"][1:].notna().all()
    assert len(set(zip(seconds["B"], seconds["fps"], strict=True))) >= 2


@pytest.mark.slow
def test_emulator_adapts_with_the_realistic_estimator(tmp_path):
    """The emulator's device keeps the same run book and estimator; its reports (NaN
    before the first delivery) reach the edge's tuner over real sockets."""
    from stac.emu.local import emulate_local

    trace = save_trace(Trace(np.array([0.0, 2.0, 4.0]), np.array([80.0, 10.0, 80.0]),
                             end_s=7.0), tmp_path / "trace.csv", "drops and recovers")
    out = tmp_path / "emu"
    emulate_local(run_options(dict(
        trace=str(trace), out=str(out), size=(96, 64), duration=4.0, source_fps=10.0,
        scheme="stac", tuner=f"offline:{TINY / 'profiles.csv'}", estimator="harmonic")))
    seconds = pd.read_csv(out / "seconds.csv")
    assert np.isnan(seconds["bandwidth_estimate_kbps"][0])
    assert seconds["bandwidth_estimate_kbps"][1:].notna().all()
    assert len(set(zip(seconds["B"], seconds["fps"], strict=True))) >= 2
