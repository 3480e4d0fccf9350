"""A device stream against an in-process edge over loopback TCP: the configuration step
reaches the device, and a new configuration discards what the uplink had not sent (§VII)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stac.emu.local import emulate_local
from stac.sim.runner import run_options
from stac.traces import Trace, save_trace


def test_reconfiguration_reaches_the_device_and_discards_the_backlog(tmp_path, monkeypatch,
                                                                     one_thread):
    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))
    # 6 kbps: 64x48 keyframes at 5 fps do not fit, so the uplink queue grows until the
    # configuration of second 1 (2.5 fps) starts and discards it
    trace = save_trace(Trace(np.array([0.0]), np.array([6.0]), end_s=60.0), tmp_path / "t.csv")
    options = run_options({"trace": str(trace), "out": str(tmp_path / "dev"),
                           "scheme": "h264", "model": "untrained:bisenet", "duration": 3.0,
                           "fps": 5.0, "size": (64, 48), "schedule": {1: 2.5}, "seed": 0,
                           "delay_ms": 10.0})
    result, edge = emulate_local(options, timeout_s=120)
    frames = pd.read_csv(tmp_path / "dev" / "frames.csv")
    assert frames["frame"].tolist() == list(range(75))
    (session,) = edge["devices"]
    assert session["configs"] == 1  # the edge's configuration step ran and answered
    switch = frames.index[frames["fps"] == 2.5][0]
    assert 25 <= switch <= 35  # one control round trip after the boundary at t = 1 s
    assert (frames["fps"][:switch] == 5.0).all() and (frames["fps"][switch:] == 2.5).all()
    assert frames["keyframe"][switch] == 1  # a new configuration starts with a keyframe
    kf = frames[frames["keyframe"] == 1]["frame"].to_numpy()
    assert np.all(np.diff(kf[kf < switch]) == 5) and np.all(np.diff(kf[kf >= switch]) == 10)
    dropped = frames[frames["dropped"] == 1]
    assert len(dropped) >= 2 and (dropped["frame"] < switch).all()  # the backlog at t = 1 s
    assert dropped["t_arrived"].isna().all()
    delivered = frames[frames["t_arrived"].notna()]
    assert len(delivered) >= 1 and (delivered["frame"] >= switch).all()
    assert session["keyframes"] == len(delivered)  # the edge got exactly those
    assert result.dropped == len(dropped)
