"""End-to-end simulated runs on a small crop of the default clip with an untrained network.

The network is untrained (mechanics only: timing, queueing, bytes); no accuracy claims.
Delivery times in frames.csv are re-derived independently from the trace (STAC §VII).
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import build_scheme

from edge.models.registry import build_model
from stac.latency import NUC7I5_T4_SECONDS, PAPER_PIXELS
from stac.results import FRAME_COLUMNS, SECOND_COLUMNS, SECOND_TAIL
from stac.sim.runner import run, run_options
from stac.traces import Trace, load_trace, save_trace

SIZE = (96, 64)
DELAY = 0.02


@pytest.fixture(scope="module")
def model():
    # one thread: the suite shares 2 cores with other jobs, where torch's 2 threads spin-wait
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield build_model("drn_d_22", width=0.25).eval()
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))


def _trace(tmp_path, times, kbps, end):
    path = tmp_path / "trace.csv"
    save_trace(Trace(np.array(times, float), np.array(kbps, float), end_s=end), path, "test")
    return path


def _run(tmp_path, model, trace, name="out", **kw):
    opts = dict(trace=str(trace), out=str(tmp_path / name), size=SIZE, duration=2.0,
                scheme="h264", fps=10.0, delay_ms=DELAY * 1000, model="untrained:drn_d_22")
    opts.update(kw)
    summary = run(run_options(opts), model=model)
    out = tmp_path / name
    return summary, pd.read_csv(out / "frames.csv"), pd.read_csv(out / "seconds.csv")


def _fifo_arrivals(trace, kf):
    """Independent replay of the uplink: FIFO, exact trace integral, then the delay."""
    free, arrivals = 0.0, []
    for t_sent, nbytes in zip(kf["t_sent"], kf["bytes"], strict=True):
        start = max(t_sent, free)
        free = trace.time_to_send(start, 8 * nbytes)
        arrivals.append(free + DELAY)
    return np.array(arrivals)


def test_h264_run_outputs_and_timing(tmp_path, model):
    trace_path = _trace(tmp_path, [0, 0.5, 1.0], [30.0, 0.0, 100.0], end=2.0)
    summary, frames, seconds = _run(tmp_path, model, trace_path)
    assert tuple(frames.columns) == FRAME_COLUMNS + ("qp", "fps")
    assert tuple(seconds.columns) == SECOND_COLUMNS + ("qp", "fps") + SECOND_TAIL
    for name in ("summary.json", "timeline.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert len(frames) == 50 and list(frames["frame"]) == list(range(50))
    np.testing.assert_allclose(frames["t_capture"], np.arange(50) / 25)
    kf = frames[frames["keyframe"] == 1]
    assert len(kf) == 20 and (kf["bytes"] > 0).all()
    assert (frames.loc[frames["keyframe"] == 0, "bytes"] == 0).all()
    assert summary["keyframes"] == 20 and summary["frames"] == 50
    # the device's encode time is Table II's 30 ms scaled to 96x64 pixels
    encode = NUC7I5_T4_SECONDS["encode"] * SIZE[0] * SIZE[1] / PAPER_PIXELS
    np.testing.assert_allclose(kf["t_sent"] - kf["t_capture"], encode, atol=1e-6)
    # queueing behind a 30 kbps / 0 kbps / 100 kbps trace, re-derived independently
    trace = load_trace(trace_path)
    delivered = kf[kf["t_arrived"].notna()]
    assert len(delivered) >= 3 and not kf["dropped"].any()
    np.testing.assert_allclose(delivered["t_arrived"], _fifo_arrivals(trace, delivered)[
        : len(delivered)], atol=1e-5)
    # keyframes still queued at the end of the run have no arrival time
    undelivered = kf[kf["t_arrived"].isna()]
    assert (undelivered["t_sent"] > delivered["t_sent"].max()).all()
    # a frame shows the newest result that reached the device: its keyframe arrived, and was
    # segmented and fed back (>= downlink delay) before the frame was shown
    shown = frames[frames["pa"].notna()]
    arrived = frames.set_index("frame")["t_arrived"]
    src = (shown["frame"] - shown["result_age_frames"]).astype(int)
    t_shown = frames["t_capture"].to_numpy()[src] + shown["delay_s"].to_numpy()
    assert (arrived.to_numpy()[src] + DELAY <= t_shown + 1e-9).all()
    assert (shown["delay_s"] > 0).all() and (shown["result_age_frames"] >= 0).all()
    # seconds.csv: bandwidth is the trace's mean over each second; bitrate the bytes sent
    np.testing.assert_allclose(seconds["bandwidth_kbps"], [15.0, 100.0])
    sent = kf.groupby(np.floor(kf["t_sent"]).astype(int))["bytes"].sum() * 8 / 1000
    np.testing.assert_allclose(seconds["bitrate_kbps"], sent.to_numpy(), rtol=1e-6)
    assert (seconds["fps"] == 10).all() and (seconds["qp"] == 30).all()
    assert seconds["pa"].between(0, 1).all()


def test_same_seed_identical_csvs_and_gt_cache(tmp_path, model):
    trace = _trace(tmp_path, [0, 1.0], [60.0, 20.0], end=2.0)
    s1, _, _ = _run(tmp_path, model, trace, name="a", duration=1.5)
    s2, _, _ = _run(tmp_path, model, trace, name="b", duration=1.5)
    for name in ("frames.csv", "seconds.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert s1["gt_cache"]["misses"] == 38 and s2["gt_cache"] == {**s1["gt_cache"], "hits": 38,
                                                                   "misses": 0}


def test_reconfiguration_discards_unsent_keyframes(tmp_path, model):
    trace_path = _trace(tmp_path, [0, 1.0], [10.0, 2000.0], end=3.0)
    summary, frames, seconds = _run(tmp_path, model, trace_path, duration=2.5,
                                    schedule={1: 5.0})
    kf = frames[frames["keyframe"] == 1]
    before, after = kf[kf["t_capture"] < 1.0], kf[kf["t_capture"] >= 1.0]
    # at t = 1 s the new configuration starts: what was not fully sent by then is dropped
    trace = load_trace(trace_path)
    done_by = _fifo_arrivals(trace, before) - DELAY
    np.testing.assert_array_equal(before["dropped"].to_numpy(), done_by > 1.0)
    assert before["dropped"].sum() >= 3 and summary["dropped"] == before["dropped"].sum()
    assert before[before["dropped"] == 1]["t_arrived"].isna().all()
    assert not after["dropped"].any()
    # the new fps (5) holds from 1 s: every 5th frame, starting at the first frame after it
    assert list(after["frame"]) == [25, 30, 35, 40, 45, 50, 55, 60]
    assert (frames["fps"] == np.where(frames["t_capture"] < 1.0, 10, 5)).all()
    assert list(seconds["fps"]) == [10, 5, 5]
    # the restarted x264 stream decodes at the edge: results of new keyframes come back
    assert frames["result_age_frames"].notna().any()
    newest = (frames["frame"] - frames["result_age_frames"]).max()
    assert newest >= 50


def test_measured_profile_uses_wall_time(tmp_path, model):
    trace = _trace(tmp_path, [0], [5000.0], end=1.0)
    _, frames, _ = _run(tmp_path, model, trace, duration=0.5, profile="measured", scheme="jpeg")
    kf = frames[frames["keyframe"] == 1]
    encode_table = NUC7I5_T4_SECONDS["encode"] * SIZE[0] * SIZE[1] / PAPER_PIXELS
    waits = (kf["t_sent"] - kf["t_capture"]).to_numpy()
    assert (waits > 0).all() and not np.allclose(waits, encode_table)
    assert math.isclose(frames["t_capture"].iloc[-1], 0.48)


def test_device_slower_than_real_time(tmp_path, model):
    """A device that takes longer than the frame interval: frames queue, seconds stop at the
    video's end, and every frame is still shown (driving the harness directly)."""
    from stac.frames import open_source
    from stac.groundtruth import GroundTruth
    from stac.latency import TableProfile
    from stac.results import RunWriter
    from stac.sim import Simulation

    source = open_source("default", size=SIZE, max_frames=25)
    scheme = build_scheme("jpeg", model, SIZE, fps=25.0)
    # 0.1 s per encode at this size: every frame is a keyframe, 2.5x the frame interval
    slow = TableProfile("slow", {"encode": 0.1, "decode": 0.0, "inference": 0.0},
                        ref_pixels=SIZE[0] * SIZE[1])
    writer = RunWriter(tmp_path / "slow", scheme.config.as_dict())
    gt = GroundTruth(model, source, "untrained")
    result = Simulation(scheme, load_trace(_trace(tmp_path, [0], [10_000.0], end=10.0)), slow,
                        gt.score, writer).run(source)
    writer.close()
    frames = pd.read_csv(tmp_path / "slow" / "frames.csv")
    seconds = pd.read_csv(tmp_path / "slow" / "seconds.csv")
    assert result.frames == 25 and result.sim_time_s == pytest.approx(2.5, abs=0.01)
    np.testing.assert_allclose(frames["t_sent"], 0.1 * (np.arange(25) + 1))  # a FIFO device
    assert list(seconds["second"]) == [0]  # the run lasts 2.5 s but the video only 1 s
    assert seconds["bitrate_kbps"][0] == pytest.approx(
        frames.loc[frames["t_sent"] < 1, "bytes"].sum() * 8 / 1000)
