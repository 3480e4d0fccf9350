"""Traces: converters on every real family, exact link integration, validation, synthesis."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stac.commands import traces as traces_cmd
from stac.traces import (
    MTU_BYTES,
    SYNTH_KINDS,
    SYNTH_MODELS,
    Trace,
    TraceError,
    import_trace,
    lag_autocorrelation,
    load_trace,
    save_trace,
    synth_trace,
    trace_stats,
)

PUBLISHED = {"lte": (21400.0, 10200.0), "fcc": (7300.0, 7100.0), "wifi": (5100.0, 2700.0)}


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    traces_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def _direct_cooked(path) -> tuple[float, float, float]:
    """Independent time-weighted (duration, mean, std) of a `time Mbps` file, in kbps."""
    data = np.loadtxt(path, ndmin=2)
    t, mbps = data[:, 0], data[:, 1]
    last_idx = {}
    for i, ti in enumerate(t):  # repeated times: the last value holds
        last_idx[ti] = i
    keep = sorted(last_idx.values())
    t, mbps = t[keep] - t[keep][0], mbps[keep]
    dt = np.diff(t)
    widths = np.append(dt, np.median(dt))
    dur = t[-1] + widths[-1]
    mean = np.sum(widths * mbps) * 1000 / dur
    std = math.sqrt(np.sum(widths * (mbps * 1000 - mean) ** 2) / dur)
    return dur, mean, std


# ----------------------------------------------------------------------------- converters


def test_mahimahi_every_file_matches_direct_byte_count(dataset):
    files = sorted((dataset("lte-mahimahi")).glob("*.*[pn]"))
    assert len(files) == 6
    for path in files:
        stamps = np.array([int(s) for s in path.read_text().split()])
        tr = import_trace(path, "mahimahi")
        # one period = last timestamp; 1500-byte opportunities -> bits per ms == kbps
        assert tr.duration == pytest.approx(stamps[-1] / 1000.0)
        assert tr.total_bits == pytest.approx(stamps.size * MTU_BYTES * 8)
        st_ = trace_stats(tr)
        assert st_["mean_kbps"] == pytest.approx(stamps.size * MTU_BYTES * 8 / stamps[-1])
        # one bin checked against a direct count of opportunities in (1000, 1100] ms
        n = np.count_nonzero((stamps > 1000) & (stamps <= 1100))
        assert tr.bandwidth_at(1.05) == pytest.approx(n * MTU_BYTES * 8 / 1000 / 0.1)


def test_mahimahi_tolerates_blank_lines_spaces_and_crlf(tmp_path):
    plain, messy = tmp_path / "plain.up", tmp_path / "messy.up"
    plain.write_text("1\n1\n150\n200\n")
    messy.write_text(" 1\r\n\n1 \r\n150\n\t200\n\n")
    a, b = import_trace(plain, "mahimahi"), import_trace(messy, "mahimahi")
    np.testing.assert_array_equal(a.kbps, b.kbps)
    np.testing.assert_allclose(a.kbps, [240.0, 240.0])  # 2 x 12 kbit per 0.1 s bin
    assert a.duration == 0.2


def test_mahimahi_bin_width_keeps_the_mean(dataset):
    path = dataset("lte-mahimahi") / "TMobile-LTE-short.up"
    fine = import_trace(path, "mahimahi", bin_s=0.1)
    coarse = import_trace(path, "mahimahi", bin_s=1.0)
    assert coarse.times_s[1] == 1.0 and fine.times_s[1] == pytest.approx(0.1)
    assert coarse.total_bits == pytest.approx(fine.total_bits)
    assert trace_stats(coarse)["std_kbps"] < trace_stats(fine)["std_kbps"]


@pytest.mark.parametrize(
    ("family", "pattern", "fmt"),
    [
        ("fcc", "*.log", "cooked"),
        ("3g-norway", "norway_*", "cooked"),
        ("wifi", "wifi_*.txt", "iperf"),
    ],
)
def test_cooked_and_iperf_every_file_matches_direct_stats(dataset, family, pattern, fmt):
    files = sorted((dataset(family)).glob(pattern))
    assert len(files) >= 40
    for path in files:
        tr = import_trace(path, fmt)
        dur, mean, std = _direct_cooked(path)
        st_ = trace_stats(tr)
        assert tr.times_s[0] == 0.0
        assert st_["duration_s"] == pytest.approx(dur)
        assert st_["mean_kbps"] == pytest.approx(mean, rel=1e-9)
        assert st_["std_kbps"] == pytest.approx(std, rel=1e-9, abs=1e-6)


def test_fcc_times_shifted_to_zero(dataset):
    path = dataset("fcc") / "trace_797466_http---www.amazon_part1.log"
    first_t, first_mbps = map(float, path.read_text().split()[:2])
    assert first_t > 0  # this file starts at 180 s in the original recording
    tr = import_trace(path, "cooked")
    assert tr.times_s[0] == 0.0 and tr.bandwidth_at(0.0) == pytest.approx(first_mbps * 1000)


def test_iperf_repeated_timestamps_keep_last_value(dataset):
    path = dataset("wifi") / "wifi_cafe_231115-154511.txt"
    tr = import_trace(path, "iperf")
    assert tr.bandwidth_at(143.2) == pytest.approx(16900.0)  # last of the 143.2 rows
    assert tr.bandwidth_at(140.0) == pytest.approx(360.0)  # 136.0 row holds until 143.2


def test_import_concatenates_files_in_time(dataset):
    d = dataset("fcc")
    a = d / "trace_797466_http---www.amazon_part1.log"
    b = d / "trace_797466_http---www.amazon_part2.log"
    ta, tb = import_trace(a, "cooked"), import_trace(b, "cooked")
    both = import_trace([a, b], "cooked")
    assert both.duration == pytest.approx(ta.duration + tb.duration)
    assert both.total_bits == pytest.approx(ta.total_bits + tb.total_bits)
    assert both.bandwidth_at(ta.duration) == tb.kbps[0]


def test_cli_import_then_stats_roundtrip(dataset, tmp_path, capsys):
    src = dataset("lte-mahimahi") / "ATT-LTE-driving-2016.up"
    out = tmp_path / "att.csv"
    assert _cli("traces", "import", "--format", "mahimahi", str(src), "-o", str(out)) == 0
    assert out.read_text().startswith("# imported by stac-sim traces import --format mahimahi")
    capsys.readouterr()
    assert _cli("traces", "stats", "--json", str(out)) == 0
    row = json.loads(capsys.readouterr().out)[0]
    stamps = np.array([int(s) for s in src.read_text().split()])
    assert row["mean_kbps"] == pytest.approx(stamps.size * 12.0 / stamps[-1] * 1000, rel=1e-6)
    assert _cli("traces", "stats", str(out)) == 0
    table = capsys.readouterr().out
    assert "mean" in table and "p95" in table and "att" in table


# ----------------------------------------------------------------------------- link integration


def _trace(times, kbps, end):
    return Trace(np.array(times, float), np.array(kbps, float), name="hand", end_s=end)


def test_time_to_send_rate_change_mid_frame():
    tr = _trace([0, 1, 2], [1000, 4000, 500], 3)  # kbps
    # 600 kbit from 0.8 s: 200 kbit by 1.0 s at 1 Mbps, 400 kbit more at 4 Mbps -> 1.1 s
    assert tr.time_to_send(0.8, 600_000) == pytest.approx(1.1)
    # 4.5 Mbit from 0.5: 0.5 Mbit by 1.0, 4 Mbit by 2.0 -> done exactly at 2.0
    assert tr.time_to_send(0.5, 4_500_000) == pytest.approx(2.0)
    assert tr.bits_between(0.8, 1.1) == pytest.approx(600_000)


def test_time_to_send_zero_bandwidth_gap():
    tr = _trace([0, 1, 3], [2000, 0, 1000], 4)
    # 1.5 Mbit from 0.5: 1 Mbit by 1.0, nothing in [1, 3), 0.5 Mbit at 1 Mbps -> 3.5
    assert tr.time_to_send(0.5, 1_500_000) == pytest.approx(3.5)
    # 3 Mbit: 2 Mbit by the end (4.0), the trace repeats: 1 Mbit more at 2 Mbps -> 4.5
    assert tr.time_to_send(0.5, 3_000_000) == pytest.approx(4.5)
    # starting inside the gap waits for the link to come back
    assert tr.time_to_send(1.5, 250_000) == pytest.approx(3.25)
    assert tr.bits_between(1.0, 3.0) == 0.0


def test_time_to_send_loops_past_the_end():
    tr = _trace([0, 1], [1000, 0], 2)  # 1 Mbit per 2 s period
    assert tr.time_to_send(0.5, 1_000_000) == pytest.approx(2.5)
    # from 1.5 (gap): 1 Mbit in [2, 3), 1 Mbit in [4, 5), 0.5 Mbit in [6, 6.5)
    assert tr.time_to_send(1.5, 2_500_000) == pytest.approx(6.5)
    assert tr.bandwidth_at(2.5) == 1000.0 and tr.bandwidth_at(3.5) == 0.0
    assert tr.bits_between(0.0, 10.0) == pytest.approx(5_000_000)


def test_time_to_send_edge_cases():
    zero = _trace([0, 1], [0, 0], 2)
    assert math.isinf(zero.time_to_send(0.0, 1.0))
    assert zero.time_to_send(0.3, 0.0) == 0.3
    tr = _trace([0], [8], 1)
    assert tr.time_to_send(0.25, 0) == 0.25
    with pytest.raises(ValueError):
        tr.time_to_send(-1.0, 10)
    with pytest.raises(ValueError):
        tr.time_to_send(0.0, -10)


@settings(max_examples=200, deadline=None)
@given(
    rates=st.lists(st.sampled_from([0.0, 0.5, 3.0, 1000.0, 25_000.0]), min_size=1, max_size=8),
    t0=st.floats(0, 50),
    bits=st.floats(0, 5e6),
)
def test_time_to_send_inverts_bits_between(rates, t0, bits):
    if not any(rates):
        rates = [*rates, 100.0]
    tr = _trace(np.arange(len(rates)) * 0.7, rates, len(rates) * 0.7)
    t1 = tr.time_to_send(t0, bits)
    assert t1 >= t0
    assert tr.bits_between(t0, t1) == pytest.approx(bits, rel=1e-7, abs=1e-3)
    if bits > 0:  # earliest such time: a little earlier, not all bits are through
        assert tr.bits_between(t0, max(t0, t1 - 1e-6)) < bits


def test_bandwidth_at_is_vectorised():
    tr = _trace([0, 1, 2], [10, 20, 30], 3)
    np.testing.assert_array_equal(tr.bandwidth_at(np.array([0, 0.99, 1, 2.5, 3.1])),
                                  [10, 10, 20, 30, 10])


# ----------------------------------------------------------------------------- validation


def test_save_load_roundtrip(tmp_path):
    tr = _trace([0, 0.5, 2], [100.5, 0, 7], 3.25)
    path = save_trace(tr, tmp_path / "x.csv", comment="hand-made\nsecond line")
    text = path.read_text()
    assert text.startswith("# hand-made\n# second line\n")
    back = load_trace(path)
    np.testing.assert_array_equal(back.times_s, tr.times_s)
    np.testing.assert_array_equal(back.kbps, tr.kbps)
    assert back.end_s == 3.25 and back.name == "x"


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ("time_s,bandwidth_kbps\n0,10\n2,10\n1,10\n", 4, "not after"),
        ("time_s,bandwidth_kbps\n0,10\n1,10\n1,10\n", 4, "not after"),
        ("time_s,bandwidth_kbps\n-1,10\n", 2, "negative"),
        ("# c\ntime_s,bandwidth_kbps\n0,10\n1,-5\n", 4, "negative"),
        ("time_s,bandwidth_kbps\n0,nan\n", 2, "NaN"),
        ("time_s,bandwidth_kbps\n0,abc\n", 2, "not a number"),
        ("time_s,bandwidth_kbps\n0,1,2\n", 2, "expected"),
    ],
)
def test_load_rejects_bad_csv_naming_file_and_line(tmp_path, body, line, what):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(TraceError, match=rf"bad\.csv:{line}: .*{what}"):
        load_trace(path)


def test_load_rejects_empty_missing_and_late_start(tmp_path):
    (tmp_path / "empty.csv").write_text("# nothing here\ntime_s,bandwidth_kbps\n")
    with pytest.raises(TraceError, match=r"empty\.csv: empty"):
        load_trace(tmp_path / "empty.csv")
    with pytest.raises(TraceError, match=r"nope\.csv: no such"):
        load_trace(tmp_path / "nope.csv")
    (tmp_path / "late.csv").write_text("time_s,bandwidth_kbps\n1,10\n")
    with pytest.raises(TraceError, match=r"late\.csv: first time"):
        load_trace(tmp_path / "late.csv")


@pytest.mark.parametrize(
    ("fmt", "body", "line", "what"),
    [
        ("mahimahi", "1\n5\n3\n", 3, "before previous"),
        ("mahimahi", "1\n-5\n", 2, "negative"),
        ("mahimahi", "1\n2.5\n", 2, "integer"),
        ("cooked", "0.0\t1.0\n2.0\t1.0\n1.0\t1.0\n", 3, "not after"),
        ("cooked", "0.0 1.0\n1.0 -1.0\n", 2, "negative"),
        ("iperf", "0.0\t1.0\n1.0\tnan\n", 2, "NaN"),
        ("iperf", "0.0\t1.0\n-1.0\t1.0\n", 2, "negative"),
        ("iperf", "0.0\t1.0\t3\n", 1, "expected"),
    ],
)
def test_import_rejects_bad_files_naming_file_and_line(tmp_path, fmt, body, line, what):
    path = tmp_path / "bad.trace"
    path.write_text(body)
    with pytest.raises(TraceError, match=rf"bad\.trace:{line}: .*{what}"):
        import_trace(path, fmt)


def test_import_rejects_empty_and_unknown_format(tmp_path):
    path = tmp_path / "empty.log"
    path.write_text("\n\n")
    for fmt in ("mahimahi", "cooked", "iperf"):
        with pytest.raises(TraceError, match=r"empty\.log: empty"):
            import_trace(path, fmt)
    with pytest.raises(TraceError, match=r"empty\.log: unknown trace format 'pcap'"):
        import_trace(path, "pcap")
    assert _cli("traces", "import", "--format", "cooked", str(path), "-o", str(tmp_path / "o")) == 2


def test_trace_rejects_bad_arrays():
    with pytest.raises(TraceError):
        _trace([0, 1], [1, -1], 2)
    with pytest.raises(TraceError):
        _trace([0.5, 1], [1, 1], 2)
    with pytest.raises(TraceError):
        _trace([0, 1], [1, 1], 1)


def test_stats_percentiles_are_time_weighted():
    tr = _trace([0, 1, 4], [10, 20, 30], 10)  # weights 1, 3, 6 s
    st_ = trace_stats(tr)
    brute = np.repeat([10.0, 20.0, 30.0], [10, 30, 60])  # 0.1 s samples
    assert st_["mean_kbps"] == pytest.approx(brute.mean())
    assert st_["std_kbps"] == pytest.approx(brute.std())
    assert st_["p5_kbps"] == 10 and st_["p25_kbps"] == 20 and st_["p50_kbps"] == 30


# ----------------------------------------------------------------------------- synthesis


@pytest.mark.parametrize("kind", SYNTH_KINDS)
def test_synth_is_deterministic_and_calibrated(kind, tmp_path):
    a = save_trace(synth_trace(kind, 300, seed=7), tmp_path / "a.csv")
    b = save_trace(synth_trace(kind, 300, seed=7), tmp_path / "b.csv")
    c = save_trace(synth_trace(kind, 300, seed=8), tmp_path / "c.csv")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    st_ = trace_stats(load_trace(a))
    mean, std = PUBLISHED[kind]
    assert st_["mean_kbps"] == pytest.approx(mean, rel=1e-4)
    assert st_["std_kbps"] == pytest.approx(std, rel=1e-4)
    assert st_["min_kbps"] >= 0


@pytest.mark.parametrize("kind", SYNTH_KINDS)
def test_synth_has_the_fitted_temporal_correlation(kind):
    """Averaged over seeds, lag-1-step autocorrelation follows the two-component model."""
    m = SYNTH_MODELS[kind]
    lag = m.step_s
    expect = m.fast_weight * math.exp(-lag / m.tau_fast_s) + (1 - m.fast_weight) * math.exp(
        -lag / m.tau_slow_s
    )
    got = np.nanmean(
        [lag_autocorrelation(synth_trace(kind, 3000, s), lag, m.step_s) for s in range(5)]
    )
    assert got == pytest.approx(expect, abs=0.12)  # linear ACF of a log-normal ~ log ACF


def test_lte_synth_has_outages():
    tr = synth_trace("lte", 3000, seed=1)
    frac = trace_stats(tr)["zero_fraction"]
    assert 0.003 < frac < 0.08


def test_shipped_traces_are_the_seeded_synthetic_ones(repo_root, tmp_path):
    for kind in SYNTH_KINDS:
        shipped = repo_root / "traces" / f"{kind}.csv"
        assert "SYNTHETIC" in shipped.read_text().splitlines()[0]
        out = tmp_path / f"{kind}.csv"
        assert _cli("traces", "synth", "--kind", kind, "--seconds", "300", "--seed", "0",
                    "-o", str(out)) == 0
        assert out.read_bytes() == shipped.read_bytes()
        st_ = trace_stats(load_trace(shipped))
        assert st_["duration_s"] == 300.0
        assert st_["mean_kbps"] == pytest.approx(PUBLISHED[kind][0], rel=1e-4)
        assert st_["std_kbps"] == pytest.approx(PUBLISHED[kind][1], rel=1e-4)


def test_synth_rejects_unknown_kind():
    with pytest.raises(TraceError, match="unknown synthetic trace kind"):
        synth_trace("5g", 10, 0)
