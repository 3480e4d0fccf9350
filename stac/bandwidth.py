"""Bandwidth estimators for the per-second configuration step (STAC §VI), sans-IO.

The run book tells an estimator of every keyframe whose transmission completed (its bits,
the moment its first bit went on the uplink and the moment its last bit left) and asks it,
when second t ends, for the bandwidth of second t + 1, telling it too which message, if
any, is still waiting to be delivered (`Waiting`). `oracle` reads the bandwidth from the
trace (the paper's setting, §VIII-C); `harmonic` uses only transmissions finished by then:
the harmonic mean of the last k per-keyframe delivered rates, as throughput-based ABR does;
`robust` is RobustMPC's estimate (Yin et al., SIGCOMM 2015): the harmonic mean of the last k
seconds, a late undelivered message counted as a low-rate sample, divided by (1 + the
largest relative error of its predictions over the last k seconds).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

from stac.traces import Trace

#: the default estimator of `stac-sim run` (the paper's)
DEFAULT_ESTIMATOR = "oracle"


class Waiting(NamedTuple):
    """The oldest message handed to the uplink and not yet delivered: its `bits`, and
    `since`, when its transmission started (the uplink is FIFO: the later of its hand-over
    and the last delivery or discard before it). By `now` it has not got through, so the
    link's rate over [since, now] was below bits / (now - since)."""

    bits: float
    since: float


class BandwidthEstimator(Protocol):
    """What the run book needs of an estimator."""

    name: str

    def transmitted(self, bits: float, t_start: float, t_end: float) -> None:
        """A message of `bits` went out over [t_start, t_end] (stream seconds)."""

    def estimate(self, second: int, waiting: Waiting | None = None) -> float:
        """At the end of `second` (time second + 1): kbps expected over the next second
        (NaN when there is nothing to estimate from yet); `waiting`: the message then still
        undelivered, if any."""


class OracleBandwidth:
    """The bandwidth of the next second, read from the trace: the paper's setting (§VIII-C,
    the tuner is given the real bandwidth); the default estimator."""

    name = "oracle"

    def __init__(self, trace: Trace) -> None:
        self.trace = trace

    def transmitted(self, bits: float, t_start: float, t_end: float) -> None:
        """Ignored: the oracle reads the trace."""

    def estimate(self, second: int, waiting: Waiting | None = None) -> float:
        """kbps over [second + 1, second + 2)."""
        return float(self.trace.bits_between(second + 1, second + 2)) / 1000.0


def harmonic_mean(rates: list[float]) -> float:
    """The harmonic mean of positive rates (NaN for none)."""
    return len(rates) / sum(1.0 / r for r in rates) if rates else math.nan


def delivered_kbps(bits: float, t_start: float, t_end: float) -> float | None:
    """The rate of one finished transmission, kbps (None when it carries none: no bits or
    zero length)."""
    duration = t_end - t_start
    if bits > 0 and duration > 0 and math.isfinite(duration):
        return bits / duration / 1000.0
    return None


class HarmonicBandwidth:
    """Harmonic mean of the last `k` per-message delivered rates (bits / (t_end - t_start)),
    counting only transmissions that ended by the time of the estimate: it never reads the
    trace, so it cannot see the future. A harmonic mean damps the optimistic outliers of
    small messages (the usual choice in throughput-based ABR, e.g. FESTIVE, MPC)."""

    name = "harmonic"

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"harmonic estimator needs k >= 1, got {k}")
        self.k = k
        self._samples: list[tuple[float, float]] = []  # (t_end, kbps), in report order

    def transmitted(self, bits: float, t_start: float, t_end: float) -> None:
        """Record the rate of one finished transmission (zero-length ones carry no rate)."""
        if (kbps := delivered_kbps(bits, t_start, t_end)) is not None:
            self._samples.append((t_end, kbps))

    def estimate(self, second: int, waiting: Waiting | None = None) -> float:
        """Harmonic mean of the last k rates of transmissions ended by second + 1 (`waiting`
        is not used: this is the plain estimator of throughput-based ABR)."""
        now = second + 1 + 1e-9
        return harmonic_mean([r for t_end, r in self._samples if t_end <= now][-self.k:])


class RobustBandwidth:
    """RobustMPC's throughput estimate (Yin et al., SIGCOMM 2015, §4.3) over the delivered
    keyframes: the harmonic mean of the rates of the transmissions that ended in the last
    `k` seconds, divided by (1 + the largest relative error |predicted - actual| / actual of
    the harmonic predictions for the seconds that ended in the last `k` seconds).

    A message still undelivered at the estimate (`Waiting`) bounds the link's rate from
    above, bits / (now - since); once that bound is below what the finished transmissions
    say (the message is late), it counts as one more sample. So in an outage, when nothing
    gets through and no finished transmission reports, the estimate falls towards zero (as
    1 / the outage's length) instead of staying at the last rates. Like `harmonic` it never
    reads the trace: only transmissions and hand-overs up to the estimate's time."""

    name = "robust"

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"robust estimator needs k >= 1 (seconds), got {k}")
        self.k = k
        self._samples: list[tuple[float, float]] = []  # (t_end, kbps), in report order
        self._errors: list[tuple[float, float]] = []  # (end of the second scored, error)
        self._last: tuple[float, float] | None = None  # (time made, harmonic prediction)

    def transmitted(self, bits: float, t_start: float, t_end: float) -> None:
        """Record the rate of one finished transmission (zero-length ones carry no rate)."""
        if (kbps := delivered_kbps(bits, t_start, t_end)) is not None:
            self._samples.append((t_end, kbps))

    def _rates(self, lo: float, hi: float, waiting: Waiting | None,
               reference: float) -> list[float]:
        """Rates of the transmissions that ended in (lo, hi], plus the waiting message's
        bound at `hi` when it is below their harmonic mean (below `reference` when none
        ended)."""
        rates = [r for t_end, r in self._samples if lo < t_end <= hi]
        if waiting is not None and waiting.bits > 0 and hi - waiting.since > 1e-9:
            bound = waiting.bits / (hi - waiting.since) / 1000.0
            if bound < (harmonic_mean(rates) if rates else reference):
                rates.append(bound)
        return rates

    def estimate(self, second: int, waiting: Waiting | None = None) -> float:
        """kbps for [second + 1, second + 2): harmonic mean of the last k seconds' rates
        (the last finished rate when none ended in them) / (1 + the largest recent error)."""
        now = second + 1 + 1e-9
        if self._last is not None:  # score the prediction made for the second that ended
            made, predicted = self._last
            actual = self._rates(made, now, waiting, predicted)
            if actual:
                self._errors.append((now, abs(predicted - harmonic_mean(actual))
                                     / harmonic_mean(actual)))
        known = [r for t_end, r in self._samples if t_end <= now]
        fallback = known[-1] if known else math.nan
        rates = self._rates(now - self.k, now, waiting, fallback) or known[-1:]
        if not rates:
            return math.nan
        predicted = harmonic_mean(rates)
        self._last = (now, predicted)
        error = max((e for t, e in self._errors if t > now - self.k), default=0.0)
        return predicted / (1.0 + error)


ESTIMATORS = ("oracle", "harmonic", "robust")


def make_estimator(name: str, trace: Trace) -> BandwidthEstimator:
    """Estimator `name` ("oracle", "harmonic[:K]" or "robust[:K]") for a run over `trace`."""
    base, _, arg = name.partition(":")
    if base == "oracle" and not arg:
        return OracleBandwidth(trace)
    kinds = {"harmonic": HarmonicBandwidth, "robust": RobustBandwidth}
    if base in kinds:
        try:
            return kinds[base](int(arg)) if arg else kinds[base]()
        except ValueError as e:
            raise ValueError(f"bad estimator {name!r}: {e}") from None
    raise ValueError(f"unknown bandwidth estimator {name!r}; known: oracle, harmonic[:K], "
                     "robust[:K]")
