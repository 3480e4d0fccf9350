"""Bandwidth estimators (stac.bandwidth): the harmonic estimator's arithmetic, and that in a
run it reads only transmissions that ended before the estimate (never future bandwidth),
while `oracle` does read the next second of the trace (the paper's setting, §VIII-C)."""

import math

import numpy as np
import pandas as pd
import pytest

from stac.bandwidth import HarmonicBandwidth, OracleBandwidth, make_estimator
from stac.sim.runner import run, run_options
from stac.traces import Trace, load_trace, save_trace

SIZE = (96, 64)
DELAY = 0.02


def test_harmonic_mean_of_the_last_k_finished_rates():
    est = HarmonicBandwidth(k=2)
    assert math.isnan(est.estimate(0))  # nothing delivered yet
    est.transmitted(100_000, 0.1, 1.1)  # 100 kbps, ended at 1.1
    assert math.isnan(est.estimate(0))  # at t = 1 it has not ended yet
    assert est.estimate(1) == pytest.approx(100.0)
    est.transmitted(300_000, 1.2, 2.2)  # 300 kbps
    est.transmitted(50_000, 1.5, 1.5)  # zero-length: no rate
    assert est.estimate(2) == pytest.approx(2 / (1 / 100 + 1 / 300))
    est.transmitted(600_000, 2.2, 2.8)  # 1000 kbps: the window (k = 2) drops the first
    assert est.estimate(2) == pytest.approx(2 / (1 / 300 + 1 / 1000))


def test_make_estimator_names():
    trace = Trace(np.array([0.0]), np.array([100.0]), end_s=3.0)
    assert isinstance(make_estimator("oracle", trace), OracleBandwidth)
    assert make_estimator("harmonic:3", trace).k == 3
    for bad in ("psychic", "harmonic:x", "harmonic:0", "oracle:2"):
        with pytest.raises(ValueError, match="estimator"):
            make_estimator(bad, trace)


@pytest.fixture()
def model(untrained_drn):
    return untrained_drn


def _run(tmp_path, model, kbps, estimator, name):
    trace = tmp_path / f"{name}.csv"
    save_trace(Trace(np.arange(len(kbps), dtype=float), np.array(kbps, float), end_s=5.0),
               trace, "test")
    opts = dict(trace=str(trace), out=str(tmp_path / name), size=SIZE, duration=3.5,
                scheme="h264", fps=10.0, delay_ms=DELAY * 1000, model="untrained:drn_d_22",
                estimator=estimator, use_cache=False)
    run(run_options(opts), model=model)
    out = tmp_path / name
    return load_trace(trace), pd.read_csv(out / "frames.csv"), pd.read_csv(out / "seconds.csv")


def test_harmonic_estimator_never_reads_future_bandwidth(tmp_path, model):
    past = [60.0, 30.0, 100.0]
    _, _, a = _run(tmp_path, model, past + [80.0, 80.0], "harmonic", "a")
    trace, frames, b = _run(tmp_path, model, past + [5000.0, 1.0], "harmonic", "b")
    # row s holds the estimate made at time s; the traces differ only from 3 s on
    est_a, est_b = a["bandwidth_estimate_kbps"], b["bandwidth_estimate_kbps"]
    assert math.isnan(est_a[0]) and est_b[1:4].notna().all()
    np.testing.assert_array_equal(est_a[:4].to_numpy(), est_b[:4].to_numpy())
    # ...and equal an independent replay: FIFO over the trace, harmonic mean of the last 5
    kf = frames[(frames["keyframe"] == 1) & frames["t_arrived"].notna()]
    free, samples = 0.0, []
    for t_sent, nbytes in zip(kf["t_sent"], kf["bytes"], strict=True):
        start = max(t_sent, free)
        free = trace.time_to_send(start, 8 * nbytes)
        samples.append((free, 8 * nbytes / (free - start) / 1000))
    for s in (1, 2, 3):
        rates = [r for end, r in samples if end <= s + 1e-9][-5:]
        assert est_b[s] == pytest.approx(len(rates) / sum(1 / r for r in rates), rel=1e-5)


def test_oracle_reads_the_next_second(tmp_path, model):
    _, _, a = _run(tmp_path, model, [60.0, 30.0, 100.0, 80.0, 80.0], "oracle", "a")
    _, _, b = _run(tmp_path, model, [60.0, 30.0, 100.0, 5000.0, 1.0], "oracle", "b")
    np.testing.assert_allclose(a["bandwidth_estimate_kbps"][1:], [30.0, 100.0, 80.0])
    assert b["bandwidth_estimate_kbps"][3] == pytest.approx(5000.0)
