"""Bandwidth estimators for the per-second configuration step (STAC §VI), sans-IO.

The run book tells an estimator of every keyframe whose transmission completed (its bits,
the moment its first bit went on the uplink and the moment its last bit left) and asks it,
when second t ends, for the bandwidth of second t + 1. `oracle` reads that from the trace
(the paper's setting, §VIII-C); `harmonic` uses only transmissions finished by then: the
harmonic mean of the last k per-keyframe delivered rates, as throughput-based ABR does.
"""

from __future__ import annotations

import math
from typing import Protocol

from stac.traces import Trace

#: the default estimator of `stac-sim run` (the paper's)
DEFAULT_ESTIMATOR = "oracle"


class BandwidthEstimator(Protocol):
    """What the run book needs of an estimator."""

    name: str

    def transmitted(self, bits: float, t_start: float, t_end: float) -> None:
        """A message of `bits` went out over [t_start, t_end] (stream seconds)."""

    def estimate(self, second: int) -> float:
        """At the end of `second` (time second + 1): kbps expected over the next second
        (NaN when there is nothing to estimate from yet)."""


class OracleBandwidth:
    """The bandwidth of the next second, read from the trace: the paper's setting (§VIII-C,
    the tuner is given the real bandwidth); the default estimator."""

    name = "oracle"

    def __init__(self, trace: Trace) -> None:
        self.trace = trace

    def transmitted(self, bits: float, t_start: float, t_end: float) -> None:
        """Ignored: the oracle reads the trace."""

    def estimate(self, second: int) -> float:
        """kbps over [second + 1, second + 2)."""
        return float(self.trace.bits_between(second + 1, second + 2)) / 1000.0


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
        duration = t_end - t_start
        if bits > 0 and duration > 0 and math.isfinite(duration):
            self._samples.append((t_end, bits / duration / 1000.0))

    def estimate(self, second: int) -> float:
        """Harmonic mean of the last k rates of transmissions ended by second + 1."""
        now = second + 1 + 1e-9
        rates = [r for t_end, r in self._samples if t_end <= now][-self.k:]
        if not rates:
            return math.nan
        return len(rates) / sum(1.0 / r for r in rates)


ESTIMATORS = ("oracle", "harmonic")


def make_estimator(name: str, trace: Trace) -> BandwidthEstimator:
    """Estimator `name` ("oracle", "harmonic" or "harmonic:K") for a run over `trace`."""
    base, _, arg = name.partition(":")
    if base == "oracle" and not arg:
        return OracleBandwidth(trace)
    if base == "harmonic":
        try:
            return HarmonicBandwidth(int(arg)) if arg else HarmonicBandwidth()
        except ValueError as e:
            raise ValueError(f"bad estimator {name!r}: {e}") from None
    raise ValueError(f"unknown bandwidth estimator {name!r}; known: oracle, harmonic[:K]")
