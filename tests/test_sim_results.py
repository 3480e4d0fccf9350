"""Run outputs: rows written in order as soon as they are final; latency profiles."""

import math

import pandas as pd
import pytest

from stac.agents import Work
from stac.latency import PAPER_PIXELS, LatencyError, get_profile
from stac.results import FRAME_COLUMNS, FrameRecord, RunWriter, SecondRecord


def _rows(path):
    return path.read_text().splitlines()


def test_frames_written_in_order_when_final(tmp_path):
    w = RunWriter(tmp_path, ("qp", "fps"))
    knobs = {"qp": 30.0, "fps": 10.0}
    k0 = FrameRecord(frame=0, t_capture=0.0, keyframe=True, bytes=900, t_sent=0.01,
                     knobs=knobs)
    w.frame(k0)  # a keyframe in flight: not final yet
    w.frame(FrameRecord(frame=1, t_capture=0.5, pa=0.9, miou=0.5, knobs=knobs, done=True))
    header = ",".join(FRAME_COLUMNS + ("qp", "fps"))
    assert _rows(tmp_path / "frames.csv") == [header]  # header only, on disk
    k0.t_arrived, k0.done = 0.2, True
    w.frame(k0)
    rows = _rows(tmp_path / "frames.csv")  # both flushed before close
    assert rows[1] == "0,0,1,900,0.010000,0.200000,0,,,,,30,10"
    assert rows[2].startswith("1,0.500000,0,0,,,0,,,0.900000,0.500000")
    w.second(SecondRecord(second=0, span_s=1.0, bitrate_kbps=7.2, bandwidth_kbps=100.0,
                          knobs=knobs))
    assert len(_rows(tmp_path / "seconds.csv")) == 1  # frames of second 0 may still come
    w.frame(FrameRecord(frame=2, t_capture=1.0, pa=0.7, miou=math.nan, knobs=knobs, done=True))
    seconds = pd.read_csv(tmp_path / "seconds.csv")
    assert list(seconds["second"]) == [0] and seconds["pa"][0] == pytest.approx(0.9)
    assert math.isnan(seconds["c"][0])
    w.frame(FrameRecord(frame=3, t_capture=1.5, keyframe=True, bytes=10, knobs=knobs))
    w.second(SecondRecord(second=1, span_s=0.6, bitrate_kbps=0.1, bandwidth_kbps=1.0,
                          knobs=knobs, c=1.0, d=2.0))
    w.close()
    frames = pd.read_csv(tmp_path / "frames.csv")
    assert list(frames["frame"]) == [0, 1, 2, 3] and math.isnan(frames["t_arrived"][3])
    seconds = pd.read_csv(tmp_path / "seconds.csv")
    assert list(seconds["second"]) == [0, 1] and seconds["pa"][1] == pytest.approx(0.7)
    assert list(seconds.columns) == ["second", "bitrate_kbps", "bandwidth_kbps", "qp", "fps",
                                     "c", "d", "pa", "miou", "bandwidth_estimate_kbps"]


def test_table_profile_scales_by_pixels():
    p = get_profile("nuc7i5-t4")
    assert p.duration(Work("inference", PAPER_PIXELS)) == pytest.approx(0.0235)
    assert p.duration(Work("encode", PAPER_PIXELS // 4)) == pytest.approx(0.030 / 4)
    work = [Work("decode", PAPER_PIXELS), Work("inference", PAPER_PIXELS)]
    assert p.call_duration(work, wall_s=123.0) == pytest.approx(0.0015 + 0.0235)
    with pytest.raises(LatencyError, match="no time for work kind 'teleport'"):
        p.duration(Work("teleport", 1))


def test_measured_profile_and_unknown_name():
    assert get_profile("measured").call_duration([Work("encode", 10)], wall_s=0.25) == 0.25
    with pytest.raises(LatencyError, match="unknown latency profile 'gpu9000'"):
        get_profile("gpu9000")
