"""Bandwidth traces: the project CSV format, converters from public formats, stats, synthesis.

A trace is a piecewise-constant bandwidth in kbps (1 kbps = 1000 bit/s). Segment ``i`` holds
``kbps[i]`` over ``[times_s[i], times_s[i+1])`` and the last segment ends at ``end_s``. Past
``end_s`` the trace repeats (period ``end_s``), as Mahimahi's ``mm-link`` replays its traces,
so a long simulation on a short trace never runs out of link. See ``docs/traces.md``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stac.notices import InputWarning

FORMATS = ("mahimahi", "cooked", "iperf")
SYNTH_KINDS = ("lte", "fcc", "wifi")
MTU_BYTES = 1500  # one Mahimahi delivery opportunity
MAHIMAHI_BIN_S = 0.1  # default bin width when converting delivery opportunities to kbps
MAX_KBPS = 1e9  # 1 Tbit/s: a larger value is a unit or parsing error, not a link
MAX_TIME_S = 1e8  # about 3 years: a larger time is a unit or parsing error


class TraceError(ValueError):
    """A trace file or trace value is invalid; the message names the file and line."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Piecewise-constant bandwidth: ``kbps[i]`` from ``times_s[i]`` to the next start/``end_s``."""

    times_s: np.ndarray
    kbps: np.ndarray
    name: str = "trace"
    end_s: float | None = None
    _cum_bits: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        times = np.asarray(self.times_s, dtype=np.float64).reshape(-1)
        kbps = np.asarray(self.kbps, dtype=np.float64).reshape(-1)
        where = f"trace {self.name!r}"
        if times.size == 0:
            raise TraceError(f"{where}: no segments")
        if times.shape != kbps.shape:
            raise TraceError(f"{where}: {times.size} times but {kbps.size} bandwidths")
        if not np.all(np.isfinite(times)):
            raise TraceError(f"{where}: non-finite time")
        if times[0] != 0.0:
            raise TraceError(f"{where}: first segment starts at {times[0]} s, not 0")
        if np.any(np.diff(times) <= 0):
            i = int(np.argmax(np.diff(times) <= 0)) + 1
            raise TraceError(f"{where}: segment {i} time {times[i]} not after {times[i - 1]}")
        if not np.all(np.isfinite(kbps)) or np.any(kbps < 0):
            i = int(np.argmax(~np.isfinite(kbps) | (kbps < 0)))
            raise TraceError(f"{where}: segment {i} bandwidth {kbps[i]} is negative or NaN")
        if self.end_s is None:
            last = float(np.median(np.diff(times))) if times.size > 1 else 1.0
            end = float(times[-1] + last)
        else:
            end = float(self.end_s)
        if not (math.isfinite(end) and end > times[-1]):
            raise TraceError(f"{where}: end {end} s is not after the last start {times[-1]} s")
        times.flags.writeable = False
        kbps.flags.writeable = False
        widths = np.diff(np.append(times, end))
        cum = np.concatenate(([0.0], np.cumsum(kbps * 1000.0 * widths)))
        cum.flags.writeable = False
        object.__setattr__(self, "times_s", times)
        object.__setattr__(self, "kbps", kbps)
        object.__setattr__(self, "end_s", end)
        object.__setattr__(self, "_cum_bits", cum)

    @property
    def duration(self) -> float:
        """Length of one period of the trace in seconds (``end_s``)."""
        return float(self.end_s)

    @property
    def widths_s(self) -> np.ndarray:
        """Duration of each segment in seconds."""
        return np.diff(np.append(self.times_s, self.end_s))

    @property
    def total_bits(self) -> float:
        """Bits the link carries over one period."""
        return float(self._cum_bits[-1])

    def _segment(self, r: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.times_s, r, side="right") - 1
        return np.clip(idx, 0, self.times_s.size - 1)

    def bandwidth_at(self, t: float | np.ndarray) -> float | np.ndarray:
        """Bandwidth in kbps at time ``t`` seconds (periodic past ``end_s``); vectorised."""
        t_arr = np.asarray(t, dtype=np.float64)
        if np.any(t_arr < 0):
            raise ValueError("bandwidth_at: negative time")
        out = self.kbps[self._segment(np.mod(t_arr, self.end_s))]
        return float(out) if out.ndim == 0 else out

    def cumulative_bits(self, t: float | np.ndarray) -> float | np.ndarray:
        """Bits the link delivers over ``[0, t]`` (exact integral, periodic); vectorised."""
        t_arr = np.asarray(t, dtype=np.float64)
        if np.any(t_arr < 0):
            raise ValueError("cumulative_bits: negative time")
        k = np.floor(t_arr / self.end_s)
        r = t_arr - k * self.end_s
        i = self._segment(r)
        partial = self.kbps[i] * 1000.0 * (r - self.times_s[i])
        out = k * self.total_bits + self._cum_bits[i] + partial
        return float(out) if out.ndim == 0 else out

    def bits_between(self, t0: float | np.ndarray, t1: float | np.ndarray) -> float | np.ndarray:
        """Bits the link delivers over ``[t0, t1]`` (exact integral of the bandwidth)."""
        if np.any(np.asarray(t1) < np.asarray(t0)):
            raise ValueError("bits_between: t1 < t0")
        return self.cumulative_bits(t1) - self.cumulative_bits(t0)

    def time_to_send(self, t0: float, bits: float) -> float:
        """Exact time at which ``bits`` bits started at ``t0`` have crossed the link.

        Integrates across rate changes and zero-bandwidth gaps (the trace repeats past its end);
        returns ``inf`` only if the whole trace has zero bandwidth.
        """
        if t0 < 0 or bits < 0 or not (math.isfinite(t0) and math.isfinite(bits)):
            raise ValueError(f"time_to_send: invalid t0={t0} or bits={bits}")
        if bits == 0:
            return float(t0)
        total = self.total_bits
        if total <= 0:
            return math.inf
        target = float(self.cumulative_bits(t0)) + float(bits)
        # Earliest t with C(t) >= target: write target = k*total + r with r in (0, total].
        k = math.ceil(target / total) - 1
        r = target - k * total
        if r <= 0:  # rounding at an exact multiple
            k, r = k - 1, r + total
        elif r > total:
            k, r = k + 1, r - total
        i = int(np.searchsorted(self._cum_bits, r, side="left")) - 1
        i = min(max(i, 0), self.kbps.size - 1)
        while self.kbps[i] == 0 and i + 1 < self.kbps.size:  # rounding put r on a flat part
            i += 1
        t = k * self.end_s + self.times_s[i] + (r - self._cum_bits[i]) / (self.kbps[i] * 1000.0)
        return max(float(t), float(t0))


def window(trace: Trace, start_s: float = 0.0, scale: float = 1.0) -> Trace:
    """The trace seen from ``start_s`` on, bandwidth times ``scale``: one period rotated so
    that second ``start_s`` comes first (a run on it still wraps around the trace's end, as
    every trace does), each value multiplied by ``scale`` (`--trace-start`, `--trace-scale`).

    ``bandwidth_at(t)`` of the result is ``scale * trace.bandwidth_at(start_s + t)``. A start
    at or past the trace's end is an error (it names the trace's length), not a wrap: a
    segment chosen past the end of a recording is a mistake in the experiment.
    """
    where = f"trace {trace.name!r}"
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise TraceError(f"{where}: trace scale must be a positive number, got {scale!r}")
    if not (isinstance(start_s, (int, float)) and math.isfinite(start_s) and start_s >= 0):
        raise TraceError(f"{where}: trace start must be a number of seconds >= 0, "
                         f"got {start_s!r}")
    if start_s >= trace.end_s:
        raise TraceError(f"{where}: trace start {start_s:g} s is past its end "
                         f"({trace.end_s:g} s long); choose a start in [0, {trace.end_s:g})")
    if start_s == 0 and scale == 1:
        return trace
    times, kbps, end = trace.times_s, trace.kbps, float(trace.end_s)
    i = int(np.searchsorted(times, start_s, side="right")) - 1  # the segment holding start_s
    head_t = times[i:] - start_s
    head_t[0] = 0.0
    cut = i + 1 if start_s > times[i] else i  # segment i's part before start_s, if any
    new_t = np.concatenate([head_t, times[:cut] + (end - start_s)])
    new_v = np.concatenate([kbps[i:], kbps[:cut]]) * float(scale)
    name = trace.name + (f"+{start_s:g}s" if start_s else "") + (f"x{scale:g}" if scale != 1
                                                                  else "")
    return Trace(new_t, new_v, name=name, end_s=end)


# ----------------------------------------------------------------------------- project CSV


def load_trace(path: str | Path) -> Trace:
    """Read a project trace CSV (``time_s,bandwidth_kbps``; ``#`` comments; ``# end_s:``)."""
    path = Path(path)
    text = _read_text(path)
    end_s = None
    times: list[float] = []
    values: list[float] = []
    header_seen = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            key, _, val = s[1:].partition(":")
            if key.strip() == "end_s":
                end_s = _number(val, path, lineno, "end_s")
            continue
        if not header_seen and s.replace(" ", "") == "time_s,bandwidth_kbps":
            header_seen = True
            continue
        parts = s.split(",")
        if len(parts) != 2:
            raise TraceError(f"{path}:{lineno}: expected 'time_s,bandwidth_kbps', got {s!r}")
        t = _number(parts[0], path, lineno, "time")
        v = _number(parts[1], path, lineno, "bandwidth")
        _check_sample(path, lineno, t, v, times[-1] if times else None, strict=True,
                      max_value=MAX_KBPS, unit="kbps")
        times.append(t)
        values.append(v)
    if not times:
        raise TraceError(f"{path}: empty trace (no data lines)")
    if times[0] != 0.0:
        raise TraceError(f"{path}: first time is {times[0]} s; project traces start at 0")
    if end_s is not None and not (end_s > times[-1] and end_s <= MAX_TIME_S):
        raise TraceError(f"{path}: end_s {end_s} is not after the last time {times[-1]} or "
                         f"above {MAX_TIME_S:g} s")
    trace = Trace(np.array(times), np.array(values), name=path.stem, end_s=end_s)
    check_deliverable(trace, path)
    return trace


def check_deliverable(trace: Trace, path: str | Path) -> None:
    """Warn (`InputWarning`) when the trace's bandwidth is zero throughout: nothing can be sent."""
    if trace.total_bits <= 0:
        warnings.warn(InputWarning(
            f"{path}: every bandwidth is 0 kbps over the whole trace ({trace.duration:g} s): "
            "nothing can be delivered, so no frame will get a result"), stacklevel=3)


def save_trace(trace: Trace, path: str | Path, comment: str = "") -> Path:
    """Write ``trace`` as a project CSV with a ``#`` header saying what it is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {c}" if c else "#" for c in comment.splitlines()] if comment else []
    lines.append(f"# end_s: {trace.end_s:.6f}")
    lines.append("time_s,bandwidth_kbps")
    lines.extend(f"{t:.6f},{v:.3f}" for t, v in zip(trace.times_s, trace.kbps, strict=True))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- converters


def import_trace(
    paths: str | Path | Sequence[str | Path], fmt: str, bin_s: float = MAHIMAHI_BIN_S
) -> Trace:
    """Convert public trace files to a :class:`Trace`; several files are concatenated in time.

    ``fmt``: ``mahimahi`` (ms delivery opportunities of 1500 bytes, binned to ``bin_s``),
    ``cooked`` (Pensieve/FCC ``time_s<TAB>Mbps``, 3G Norway ``time_s<SPACE>Mbps``) or ``iperf``
    (``time_s<TAB>Mbps``). Times are shifted to start at 0.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if fmt not in FORMATS:
        where = paths[0] if paths else "<no file>"
        raise TraceError(f"{where}: unknown trace format {fmt!r}; expected one of {FORMATS}")
    if not paths:
        raise TraceError("import_trace: no input files")
    parts = [_read_mahimahi(p, bin_s) if fmt == "mahimahi" else _read_cooked(p) for p in paths]
    if len(parts) == 1:
        trace = parts[0]
    else:
        offsets = np.cumsum([0.0] + [p.end_s for p in parts[:-1]])
        times = np.concatenate([p.times_s + off for p, off in zip(parts, offsets, strict=True)])
        kbps = np.concatenate([p.kbps for p in parts])
        name = "+".join(p.name for p in parts)
        trace = Trace(times, kbps, name=name, end_s=float(offsets[-1] + parts[-1].end_s))
    check_deliverable(trace, ", ".join(map(str, paths)))
    return trace


def _read_mahimahi(path: Path, bin_s: float) -> Trace:
    """Mahimahi opportunities -> kbps per ``bin_s`` bin over ``(0, last_ms]`` (the loop period)."""
    if not bin_s > 0:
        raise TraceError(f"{path}: bin width must be positive, got {bin_s}")
    text = _read_text(path)
    ms_arr = _mahimahi_fast(text)
    if ms_arr is None:  # something is wrong: the line-by-line reader names the line
        ms_arr = _mahimahi_checked(path, text)
    period_s = ms_arr[-1] / 1000.0
    if period_s <= 0:
        raise TraceError(f"{path}: all opportunities at 0 ms; the trace has no duration")
    nbins = max(1, math.ceil(period_s / bin_s - 1e-9))
    # An opportunity at t ms belongs to the bin holding (t-1, t]; the one at 0 ms opens bin 0.
    idx = np.clip(np.ceil(ms_arr / 1000.0 / bin_s - 1e-9).astype(np.int64) - 1, 0, nbins - 1)
    counts = np.bincount(idx, minlength=nbins)
    times = np.arange(nbins) * bin_s
    widths = np.diff(np.append(times, period_s))
    kbps = counts * MTU_BYTES * 8 / 1000.0 / widths
    return Trace(times, kbps, name=path.stem, end_s=period_s)


def _mahimahi_fast(text: str) -> np.ndarray | None:
    """Vectorised parse of a file of digits and newlines only; None if it holds anything else."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    digit = (raw >= ord("0")) & (raw <= ord("9"))
    if not digit.any() or not np.all(digit | (raw == ord("\n")) | (raw == ord("\r"))):
        return None
    try:
        ms = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        return None
    if ms.size == 0 or np.any(np.diff(ms) < 0):
        return None
    return ms


def _mahimahi_checked(path: Path, text: str) -> np.ndarray:
    """Line-by-line parse that raises a :class:`TraceError` naming the first bad line."""
    stamps: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        try:
            ms = int(s)
        except ValueError:
            msg = f"{path}:{lineno}: expected an integer ms timestamp, got {s!r}"
            raise TraceError(msg) from None
        if ms < 0:
            raise TraceError(f"{path}:{lineno}: negative time {ms} ms")
        if stamps and ms < stamps[-1]:
            raise TraceError(f"{path}:{lineno}: time {ms} ms before previous {stamps[-1]} ms")
        stamps.append(ms)
    if not stamps:
        raise TraceError(f"{path}: empty trace (no delivery opportunities)")
    return np.asarray(stamps, dtype=np.int64)


def _read_cooked(path: Path) -> Trace:
    """``time_s Mbps`` lines (tab or spaces): the value holds from its time to the next one."""
    text = _read_text(path)
    times: list[float] = []
    values: list[float] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        if len(parts) != 2:
            raise TraceError(f"{path}:{lineno}: expected 'time_s Mbps', got {s!r}")
        t = _number(parts[0], path, lineno, "time")
        v = _number(parts[1], path, lineno, "bandwidth")
        _check_sample(path, lineno, t, v, times[-1] if times else None, strict=False,
                      max_value=MAX_KBPS / 1000.0, unit="Mbps")
        if times and t == times[-1]:  # zero-length segment: keep the newest value
            values[-1] = v * 1000.0
            continue
        times.append(t)
        values.append(v * 1000.0)
    if not times:
        raise TraceError(f"{path}: empty trace (no data lines)")
    t = np.asarray(times) - times[0]
    last = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    return Trace(t, np.asarray(values), name=path.stem, end_s=float(t[-1] + last))


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TraceError(f"{path}: cannot read trace: {e}") from None


def _number(text: str, path: Path, lineno: int, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TraceError(f"{path}:{lineno}: {what} {text.strip()!r} is not a number") from None


def _check_sample(
    path: Path, lineno: int, t: float, v: float, prev: float | None, strict: bool,
    max_value: float, unit: str,
) -> None:
    if not math.isfinite(t) or t < 0 or t > MAX_TIME_S:
        raise TraceError(f"{path}:{lineno}: time {t} s is negative, not finite or above "
                         f"{MAX_TIME_S:g} s")
    if prev is not None and (t < prev or (strict and t == prev)):
        raise TraceError(f"{path}:{lineno}: time {t} is not after the previous time {prev}")
    if math.isnan(v) or v < 0 or not math.isfinite(v):
        raise TraceError(f"{path}:{lineno}: bandwidth {v} is negative, NaN or infinite")
    if v > max_value:
        raise TraceError(f"{path}:{lineno}: bandwidth {v:g} {unit} is above {max_value:g} "
                         f"{unit} (1 Tbit/s); is the column in {unit}?")


# ----------------------------------------------------------------------------- statistics


def trace_stats(trace: Trace) -> dict:
    """Time-weighted duration, mean, std and percentiles of the bandwidth (kbps)."""
    w = trace.widths_s
    v = trace.kbps
    mean = float(np.sum(w * v) / trace.end_s)
    std = float(math.sqrt(max(0.0, np.sum(w * (v - mean) ** 2) / trace.end_s)))
    order = np.argsort(v, kind="stable")
    cdf = np.cumsum(w[order]) / trace.end_s
    stats = {
        "name": trace.name,
        "duration_s": trace.duration,
        "segments": int(v.size),
        "mean_kbps": mean,
        "std_kbps": std,
        "min_kbps": float(v.min()),
        "max_kbps": float(v.max()),
    }
    for p in (5, 25, 50, 75, 95):
        j = min(int(np.searchsorted(cdf, p / 100.0 - 1e-12, side="left")), v.size - 1)
        stats[f"p{p}_kbps"] = float(v[order][j])
    stats["zero_fraction"] = float(np.sum(w[v == 0]) / trace.end_s)
    return stats


def lag_autocorrelation(trace: Trace, lag_s: float, step_s: float = 1.0) -> float:
    """Autocorrelation of the bandwidth sampled every ``step_s`` at lag ``lag_s`` (one period)."""
    t = np.arange(0.0, trace.end_s, step_s)
    x = trace.bits_between(t, np.minimum(t + step_s, trace.end_s)) / np.maximum(
        np.minimum(step_s, trace.end_s - t), 1e-12
    )
    k = int(round(lag_s / step_s))
    if k <= 0 or k >= x.size - 1 or np.std(x) == 0:
        return float("nan")
    return float(np.corrcoef(x[:-k], x[k:])[0, 1])


# ----------------------------------------------------------------------------- synthesis


@dataclass(frozen=True)
class SynthModel:
    """Log-normal bandwidth driven by two AR(1) components, with Markov on/off outages.

    The log-bandwidth autocorrelation is ``w exp(-lag/tau_fast) + (1-w) exp(-lag/tau_slow)``,
    fitted to the real traces in the data root's trace datasets (see ``docs/traces.md``); the
    marginal is rescaled to the published mean and std exactly.
    """

    mean_kbps: float  # target time-averaged mean (published, STAC §VIII-A)
    std_kbps: float  # target time-averaged std (published)
    tau_fast_s: float  # correlation time of the fast AR(1) component
    tau_slow_s: float  # correlation time of the slow AR(1) component
    fast_weight: float  # share w of the log-variance in the fast component
    step_s: float = 1.0  # segment length (the real family's sampling period)
    outage_every_s: float = 0.0  # mean time between outages (0: none)
    outage_mean_s: float = 0.0  # mean outage length (geometric in steps)


SYNTH_MODELS: dict[str, SynthModel] = {
    "lte": SynthModel(21400.0, 10200.0, tau_fast_s=3.0, tau_slow_s=60.0, fast_weight=0.8,
                      outage_every_s=190.0, outage_mean_s=2.0),
    "fcc": SynthModel(7300.0, 7100.0, tau_fast_s=0.1, tau_slow_s=6.6, fast_weight=0.6,
                      step_s=5.0),
    "wifi": SynthModel(5100.0, 2700.0, tau_fast_s=0.6, tau_slow_s=6.9, fast_weight=0.86,
                       outage_every_s=90.0, outage_mean_s=1.6),
}


def synth_trace(kind: str, seconds: float, seed: int) -> Trace:
    """Seeded synthetic trace calibrated to the published mean and std of the STAC datasets
    (§VIII-A: LTE 21.4±10.2, FCC 7.3±7.1, WiFi 5.1±2.7 Mbps), exact over the whole trace.
    """
    if kind not in SYNTH_MODELS:
        raise TraceError(f"unknown synthetic trace kind {kind!r}; expected one of {SYNTH_KINDS}")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"synth_trace: seconds must be positive, got {seconds}")
    m = SYNTH_MODELS[kind]
    rng = np.random.default_rng(seed)
    n = max(2, math.ceil(seconds / m.step_s - 1e-9))
    w = m.fast_weight
    x = math.sqrt(w) * _ar1(rng, n, math.exp(-m.step_s / m.tau_fast_s))
    x += math.sqrt(1.0 - w) * _ar1(rng, n, math.exp(-m.step_s / m.tau_slow_s))
    up = _link_up(rng, n, m)
    kbps = np.zeros(n)
    kbps[up] = _lognormal_with_moments(x[up], *_up_moments(m, float(up.mean())))
    times = np.arange(n) * m.step_s
    end = float(seconds)
    if times[-1] >= end:  # seconds shorter than one step: one segment
        times, kbps = times[:1], kbps[:1]
    return Trace(times, kbps, name=f"synthetic-{kind}", end_s=end)


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """Stationary unit-variance AR(1) sequence with lag-1 correlation ``phi``."""
    eps = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = eps[0]
    s = math.sqrt(1.0 - phi * phi)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + s * eps[i]
    return x


def _link_up(rng: np.random.Generator, n: int, m: SynthModel) -> np.ndarray:
    """'Link up' mask of a two-state Markov chain per step (all up without outages)."""
    u = rng.random(n)  # drawn even without outages so the stream of draws is the same
    if m.outage_every_s <= 0:
        return np.ones(n, dtype=bool)
    p_down = 1.0 - math.exp(-m.step_s / m.outage_every_s)
    p_up = min(1.0, m.step_s / m.outage_mean_s)
    on = np.empty(n, dtype=bool)
    up = True
    for i in range(n):
        up = (u[i] >= p_down) if up else (u[i] < p_up)
        on[i] = up
    if not on.any():  # a trace that is one long outage carries nothing; keep one step up
        on[0] = True
    return on


def _up_moments(m: SynthModel, f: float) -> tuple[float, float]:
    """Mean and std the up-steps need so the whole trace (outages at 0) hits ``m``'s moments."""
    mu = m.mean_kbps / f
    ex2 = (m.std_kbps**2 + m.mean_kbps**2) / f
    return mu, math.sqrt(max(ex2 - mu * mu, 0.0))


def _lognormal_with_moments(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``c * exp(sigma * x)`` with sigma, c solved so the sample mean and std are exact.

    The sample coefficient of variation of ``exp(sigma x)`` grows with sigma, so a bisection
    finds it; a pure scale keeps every value positive (no clipping).
    """
    target_cv = std / mean
    if x.size < 2 or target_cv == 0 or np.ptp(x) == 0:
        return np.full(x.shape, mean)

    def cv(sigma: float) -> float:
        z = np.exp(sigma * (x - x.max()))
        return float(z.std() / z.mean())

    lo, hi = 0.0, 1.0
    while cv(hi) < target_cv and hi < 64:
        hi *= 2
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cv(mid) < target_cv else (lo, mid)
    z = np.exp(hi * (x - x.max()))
    return z * (mean / z.mean())


def stats_table(rows: Iterable[dict]) -> str:
    """Readable fixed-width table of :func:`trace_stats` dicts (Mbps)."""
    cols = ("duration_s", "mean_kbps", "std_kbps", "p5_kbps", "p25_kbps", "p50_kbps",
            "p75_kbps", "p95_kbps")
    heads = ("dur_s", "mean", "std", "p5", "p25", "p50", "p75", "p95")
    rows = list(rows)
    width = max([len("trace")] + [len(r["name"]) for r in rows])
    lines = [f"{'trace':<{width}} " + " ".join(f"{h:>8}" for h in heads) + "   (Mbps)"]
    for r in rows:
        vals = [f"{r[c]:8.1f}" if c == "duration_s" else f"{r[c] / 1000:8.2f}" for c in cols]
        lines.append(f"{r['name']:<{width}} " + " ".join(vals))
    return "\n".join(lines)
