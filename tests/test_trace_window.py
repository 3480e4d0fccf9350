"""`--trace-scale` / `--trace-start`: the trace window (`stac.traces.window`), the options of
`run`, `emulate` and `sweep`, and a run's per-second bandwidth on a scaled, offset trace."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from stac.cli import main
from stac.experiment.runs import full_config, run_id
from stac.options import add_stream_arguments, stream_argv
from stac.sim.runner import run_options
from stac.traces import Trace, TraceError, save_trace, window

# ten one-second steps of 1000, 2000, ..., 10000 kbps: every second is told apart
STEPS = Trace(np.arange(10.0), 1000.0 * np.arange(1, 11), name="steps", end_s=10.0)


def test_window_is_the_trace_shifted_and_scaled():
    irregular = Trace(np.array([0.0, 0.4, 1.7, 3.0]), np.array([100.0, 0.0, 250.0, 40.0]),
                      name="irregular", end_s=4.2)
    t = np.linspace(0.0, 3 * irregular.end_s, 997)
    for start in (0.0, 0.4, 1.0, 3.0, 4.1):  # at a segment start, inside one, near the end
        for scale in (1.0, 0.05, 3.0):
            w = window(irregular, start, scale)
            assert w.end_s == irregular.end_s
            np.testing.assert_allclose(w.bandwidth_at(t),
                                       scale * irregular.bandwidth_at(t + start))
            np.testing.assert_allclose(w.bits_between(0.0, t),
                                       scale * irregular.bits_between(start, start + t),
                                       rtol=1e-12, atol=1e-6)


def test_window_names_what_it_did():
    assert window(STEPS) is STEPS
    assert window(STEPS, 3.0, 0.25).name == "steps+3sx0.25"


@pytest.mark.parametrize("start, scale, message", [
    (10.0, 1.0, "trace start 10 s is past its end (10 s long)"),
    (25.0, 1.0, "past its end"),
    (-1.0, 1.0, "trace start must be"),
    (float("nan"), 1.0, "trace start must be"),
    (0.0, 0.0, "trace scale must be a positive number"),
    (0.0, -2.0, "trace scale must be a positive number"),
    (0.0, float("inf"), "trace scale must be a positive number"),
])
def test_bad_window_is_a_clear_error(start, scale, message):
    with pytest.raises(TraceError, match="steps") as info:
        window(STEPS, start, scale)
    assert message in str(info.value)


def _parse(argv):
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_stream_arguments(parser)
    parser.add_argument("--out", default="x")
    return parser.parse_known_args(argv)[0]


def test_options_parse_check_and_travel_to_the_device_stream():
    args = _parse(["--trace", "t.csv", "--trace-scale", "0.05", "--trace-start", "30"])
    assert (args.trace_scale, args.trace_start) == (0.05, 30.0)
    assert _parse(["--trace", "t.csv"]).trace_scale == 1.0
    for bad in (["--trace-scale", "0"], ["--trace-scale", "-1"], ["--trace-scale", "x"],
                ["--trace-start", "-5"], ["--trace-start", "nan"]):
        with pytest.raises(argparse.ArgumentError, match="trace-s"):
            _parse(["--trace", "t.csv", *bad])
    # `stac-sim emulate` spawns `stac-device stream` with these arguments
    options = run_options({"trace": "t.csv", "out": "o", "trace_scale": 0.05,
                           "trace_start": 30.0})
    again = _parse(stream_argv(options))
    assert (again.trace_scale, again.trace_start) == (0.05, 30.0)
    plain = stream_argv(run_options({"trace": "t.csv", "out": "o"}))
    assert "--trace-scale" not in plain and "--trace-start" not in plain


def test_sweeps_key_on_the_window(repo_root):
    params = {"trace": str(repo_root / "traces" / "lte.csv"), "scheme": "h264", "duration": 1}
    ids = {run_id(full_config({**params, **extra})[0])
           for extra in ({}, {"trace_scale": 0.5}, {"trace_start": 30}, {"trace_start": 31},
                         {"trace_scale": 0.5, "trace_start": 30})}
    assert len(ids) == 5
    assert run_id(full_config({**params, "trace_scale": 1, "trace_start": 0})[0]) == \
        run_id(full_config(params)[0])  # the defaults spelled out are the same run


@pytest.fixture()
def steps_csv(tmp_path):
    return save_trace(STEPS, tmp_path / "steps.csv")


@pytest.mark.slow
def test_run_sees_the_scaled_offset_trace(tmp_path, steps_csv, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))
    common = ["run", "--trace", str(steps_csv), "--scheme", "h264", "--duration", "4",
              "--tuner", "fixed",
              "--model", str(tiny_checkpoint), "--size", "96x64", "--threads", "1"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--trace-scale", "0.25", "--trace-start", "7",
                 "--out", str(tmp_path / "window")]) == 0
    plain = pd.read_csv(tmp_path / "plain" / "seconds.csv")
    shifted = pd.read_csv(tmp_path / "window" / "seconds.csv")
    np.testing.assert_allclose(plain["bandwidth_kbps"], [1000, 2000, 3000, 4000])
    # seconds 7, 8, 9 of the trace, then it wraps to second 0; a quarter of each
    np.testing.assert_allclose(shifted["bandwidth_kbps"],
                               0.25 * np.array([8000, 9000, 10000, 1000]))


@pytest.mark.slow
def test_run_with_a_start_past_the_end_fails_clearly(tmp_path, steps_csv, tiny_checkpoint,
                                                     capsys):
    rc = main(["run", "--trace", str(steps_csv), "--trace-start", "12", "--duration", "1",
               "--tuner", "fixed",
               "--scheme", "h264", "--model", str(tiny_checkpoint), "--size", "96x64",
               "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "trace start 12 s is past its end (10 s long)" in err and "steps" in err
    assert not (tmp_path / "o" / "seconds.csv").exists()


@pytest.mark.slow
def test_emulated_stream_sees_the_scaled_offset_trace(tmp_path, steps_csv, monkeypatch,
                                                      one_thread):
    from stac.emu.local import emulate_local

    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))
    options = run_options({"trace": str(steps_csv), "out": str(tmp_path / "dev"),
                           "scheme": "h264", "model": "untrained:bisenet", "duration": 2.0,
                           "fps": 5.0, "size": (64, 48), "seed": 0, "tuner": "fixed",
                           "trace_scale": 0.5, "trace_start": 8.0})
    emulate_local(options, timeout_s=120)
    seconds = pd.read_csv(tmp_path / "dev" / "seconds.csv")
    np.testing.assert_allclose(seconds["bandwidth_kbps"], [4500.0, 5000.0])
