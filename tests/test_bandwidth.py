"""Bandwidth estimators (stac.bandwidth): the harmonic and robust estimators' arithmetic, and
that in a run they read only transmissions that ended before the estimate (never future
bandwidth), while `oracle` does read the next second of the trace (the paper's setting,
§VIII-C); the robust one falls towards zero over an outage, where the harmonic one stays."""

import math

import numpy as np
import pandas as pd
import pytest

from stac.bandwidth import (
    HarmonicBandwidth,
    OracleBandwidth,
    RobustBandwidth,
    Waiting,
    make_estimator,
)
from stac.protocol import Config
from stac.runbook import RunBook
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
    assert isinstance(make_estimator("robust", trace), RobustBandwidth)
    assert make_estimator("robust:4", trace).k == 4
    for bad in ("psychic", "harmonic:x", "harmonic:0", "oracle:2", "robust:0", "robust:y"):
        with pytest.raises(ValueError, match="estimator"):
            make_estimator(bad, trace)


def hm(*rates):
    return len(rates) / sum(1 / r for r in rates)


def test_robust_is_the_harmonic_mean_of_the_last_k_seconds_over_one_plus_the_max_error():
    est = RobustBandwidth(k=2)
    assert math.isnan(est.estimate(0))  # nothing delivered yet
    est.transmitted(100_000, 0.2, 0.7)  # 200 kbps, ended at 0.7
    assert est.estimate(0) == pytest.approx(200.0)  # no error scored yet
    est.transmitted(50_000, 1.2, 1.7)  # 100 kbps in second 1: the prediction 200 was 100% off
    assert est.estimate(1) == pytest.approx(hm(200, 100) / (1 + 1.0))
    est.transmitted(200_000, 2.1, 3.0)  # ~222 kbps in second 2
    est.transmitted(100_000, 3.0, 3.5)  # 200 kbps, ends after the estimate at t = 3
    err2 = abs(hm(200, 100) - 2000 / 9) / (2000 / 9)
    # the window (1, 3] holds 100 and 222.2 (200 at 0.7 and 200 at 3.5 are out of it); the
    # errors of the last 2 s: 1.0 (second 1) and err2 (second 2)
    assert est.estimate(2) == pytest.approx(hm(100, 2000 / 9) / (1 + max(1.0, err2)))
    # the next second: second 1's error (scored at t = 2) has left the 2 s window
    err3 = abs(hm(100, 2000 / 9) - 200) / 200
    assert est.estimate(3) == pytest.approx(hm(2000 / 9, 200) / (1 + max(err2, err3)))


def test_robust_falls_towards_zero_over_an_outage_and_the_harmonic_does_not():
    robust, harmonic = RobustBandwidth(), HarmonicBandwidth()
    for t in np.arange(0.0, 5.0, 0.25):  # 5 s of 50 kbit keyframes at 500 kbps (0.1 s each)
        for est in (robust, harmonic):
            est.transmitted(50_000, t, t + 0.1)
    steady = robust.estimate(4, None)
    assert steady == pytest.approx(500.0)
    stuck = Waiting(bits=50_000, since=5.0)  # then nothing more gets through
    seen = [robust.estimate(s, stuck) for s in range(5, 12)]
    assert all(a > b for a, b in zip(seen, seen[1:], strict=False))  # falls every second
    assert seen[0] < 0.5 * steady and seen[-1] < 0.01 * steady  # near zero after 7 s
    assert harmonic.estimate(11, stuck) == pytest.approx(500.0)  # blind: no new sample


def test_robust_ignores_a_waiting_message_that_is_not_late():
    a, b = RobustBandwidth(), RobustBandwidth()
    for est in (a, b):
        est.transmitted(100_000, 0.0, 0.5)  # 200 kbps
        est.transmitted(100_000, 1.0, 1.5)
    # 100 kbit on the link for 0.1 s: a rate bound of 1000 kbps says nothing about 200 kbps
    assert a.estimate(1, Waiting(100_000, 1.9)) == pytest.approx(b.estimate(1, None))
    # for 0.8 s: at most 125 kbps, late for 200 kbps, so it counts as a sample
    c = RobustBandwidth()
    c.transmitted(100_000, 0.0, 0.5)
    c.transmitted(100_000, 1.0, 1.2)  # 500 kbps
    assert c.estimate(1, Waiting(100_000, 1.2)) < hm(200, 500)


def test_the_run_book_reports_the_oldest_undelivered_keyframe_and_its_fifo_start():
    trace = Trace(np.array([0.0]), np.array([100.0]), end_s=10.0)
    book = RunBook(trace, Config.of({"B": 4.0, "fps": 5.0}))
    for i, t in enumerate((0.0, 0.2, 0.4, 0.6)):
        book.captured(i, t)
    assert book.waiting() is None
    assert book.encoded(0, 0.0, 1000, epoch=0) and book.encoded(1, 0.2, 2000, epoch=0)
    assert book.waiting() == Waiting(8000.0, 0.0)
    book.arrived(0, 0.35, t_start=0.0, t_end=0.33)
    assert book.waiting() == Waiting(16000.0, 0.33)  # it went out when frame 0's last bit left
    book.config_started(0.5, book.config)  # a new configuration discards what is on the link
    book.dropped(1)
    assert book.waiting() is None
    assert book.encoded(3, 0.6, 500, epoch=1)
    assert book.waiting() == Waiting(4000.0, 0.6)  # the link was free since the discard at 0.5


@pytest.fixture()
def model(untrained_drn):
    return untrained_drn


def _run(tmp_path, model, kbps, estimator, name, duration=3.5):
    trace = tmp_path / f"{name}.csv"
    save_trace(Trace(np.arange(len(kbps), dtype=float), np.array(kbps, float),
                     end_s=max(5.0, len(kbps))),
               trace, "test")
    opts = dict(trace=str(trace), out=str(tmp_path / name), size=SIZE, duration=duration,
                scheme="h264", fps=10.0, delay_ms=DELAY * 1000, model="untrained:drn_d_22",
                estimator=estimator, use_cache=False)
    run(run_options(opts), model=model)
    out = tmp_path / name
    return load_trace(trace), pd.read_csv(out / "frames.csv"), pd.read_csv(out / "seconds.csv")


@pytest.mark.parametrize("name", ["harmonic", "robust"])
def test_estimator_never_reads_future_bandwidth(tmp_path, model, name):
    past = [60.0, 30.0, 100.0]
    _, _, a = _run(tmp_path, model, past + [80.0, 80.0], name, "a")
    trace, frames, b = _run(tmp_path, model, past + [5000.0, 1.0], name, "b")
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
    if name == "robust":  # every estimate at most the rates delivered in the last 5 s
        for s in (1, 2, 3):
            rates = [r for end, r in samples if end <= s + 1e-9]
            assert 0 < est_b[s] <= max(rates) + 1e-6
        return
    for s in (1, 2, 3):
        rates = [r for end, r in samples if end <= s + 1e-9][-5:]
        assert est_b[s] == pytest.approx(len(rates) / sum(1 / r for r in rates), rel=1e-5)


def test_robust_estimate_falls_in_a_run_through_an_outage(tmp_path, model):
    kbps = [400.0, 400.0, 400.0, 0.5, 0.5, 0.5, 400.0]
    _, _, h = _run(tmp_path, model, kbps, "harmonic", "h", duration=6.5)
    _, _, r = _run(tmp_path, model, kbps, "robust", "r", duration=6.5)
    # the estimates made at t = 4 and 5, inside the outage (rows 4, 5: made a second before)
    assert (h["bandwidth_estimate_kbps"][4:6] > 100).all()  # stays at the last rates
    assert (r["bandwidth_estimate_kbps"][4:6] < 40).all()  # falls below a tenth


def test_oracle_reads_the_next_second(tmp_path, model):
    _, _, a = _run(tmp_path, model, [60.0, 30.0, 100.0, 80.0, 80.0], "oracle", "a")
    _, _, b = _run(tmp_path, model, [60.0, 30.0, 100.0, 5000.0, 1.0], "oracle", "b")
    np.testing.assert_allclose(a["bandwidth_estimate_kbps"][1:], [30.0, 100.0, 80.0])
    assert b["bandwidth_estimate_kbps"][3] == pytest.approx(5000.0)
