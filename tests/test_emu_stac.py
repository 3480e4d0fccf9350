"""The `stac` scheme through the emulator: the device propagates the edge's results and
region levels as in the simulator (the same agents), over real processes and sockets."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from stac.cli import main as stac_sim
from stac.commands.emulate import emulate
from stac.sim.runner import run_options


@pytest.mark.slow
def test_stac_scheme_over_loopback(tmp_path, repo_root, monkeypatch, capsys):
    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))
    tables = tmp_path / "tables.npz"  # mechanics only: tables of an untrained network
    assert stac_sim(["tables", "build", "--model", "untrained:bisenet", "--data", "default",
                     "--frames", "2", "--size", "64x48", "-o", str(tables)]) == 0
    low, high = json.loads(capsys.readouterr().out)["B_range"]
    options = run_options(dict(
        trace=str(repo_root / "traces" / "lte.csv"), out=str(tmp_path / "emu"),
        scheme="stac", model="untrained:bisenet", duration=2.0, fps=5.0, size=(64, 48),
        B=math.sqrt(low * high), tables=str(tables), seed=0, tuner="fixed"))
    result = emulate(options, progress=False)
    assert [d["exit"] for d in result["devices"]] == [0]
    frames = pd.read_csv(tmp_path / "emu" / "device-0" / "frames.csv")
    assert frames["frame"].tolist() == list(range(50))
    kf = frames[frames["keyframe"] == 1]
    assert len(kf) == 10 and (kf["bytes"] > 0).all() and kf["t_arrived"].notna().all()
    (session,) = result["edge"]["devices"]
    assert session["scheme"] == "stac" and session["feedbacks"] >= 5
    shown = frames[frames["result_age_frames"].notna()]
    # propagated results: shown for every frame once one came back, each available right
    # after the frame's own flow step, long before a round trip to the edge
    assert shown["frame"].tolist() == list(range(shown["frame"].min(), 50))
    assert shown["delay_s"].median() < 0.5 * (shown["result_age_frames"].median() / 25.0
                                              + 0.04)
    assert shown["pa"].notna().all()
