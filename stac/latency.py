"""Latency profiles: how long a sans-IO agent call takes in simulated time.

An agent call returns `Work(kind, pixels)` records. A *table* profile gives each kind a
reference time measured by the paper at the paper's resolution and scales it linearly by
pixel count; the *measured* profile ignores the records and uses the real wall time of the
call on this host (the driver times it with `time.perf_counter`; agents never read clocks).

`nuc7i5-t4` is STAC Table II (§VIII-F): an Intel NUC7i5 end device and a Tesla T4 edge,
at 2048x1040 (Cityscapes / YouTube frames, §VIII-A). Ranges are taken at their midpoint
("7-40 ms" -> 23.5 ms), upper bounds "< x" at x/2, "<< 1 ms" at 0.1 ms. See
docs/simulation.md for the table and the scaling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stac.agents import Work

#: Frame area (pixels) at which the paper measured Table II: 2048x1040 (STAC §VIII-A).
PAPER_PIXELS = 2048 * 1040

#: STAC Table II reference times in seconds at PAPER_PIXELS, by Work kind.
NUC7I5_T4_SECONDS: dict[str, float] = {
    # end device (Intel NUC7i5, 2 cores)
    "encode": 0.030,  # Encoding 10-50 ms
    "flow": 0.0575,  # DIS optical flow extraction 55-60 ms
    "warp": 0.0015,  # pixel-level mapping < 3 ms
    "predictive_coding": 0.020,  # integration with predictive coding ~ 20 ms
    "content": 0.0025,  # content-related metrics c, d < 5 ms
    # AccMPEG's AccModel (scheme accmpeg; not in Table II): measured on this project's
    # host, one thread, experiments/bench_accmodel.py (docs/accmpeg.md)
    "accmodel": 0.30,
    # CASVA's reference pre-encoding of one frame a second (scheme casva): x264 like
    # "encode" (Encoding 10-50 ms), scaled by the reference size's pixels
    "pre_encode": 0.030,
    # edge server (Tesla T4)
    "decode": 0.0015,  # Decoding < 3 ms
    "inference": 0.0235,  # DNN inference 7-40 ms (DRN-D-22, DRN-D-38, BiSeNet)
    "gradient": 0.021,  # gradient calculation 6-36 ms
    "strategy": 0.0001,  # compression strategy generation << 1 ms
    "tuner": 0.0005,  # NN inference for configuration adaptation < 1 ms
}


class LatencyError(ValueError):
    """An unknown profile name, or a Work kind a profile has no time for."""


@dataclass(frozen=True)
class TableProfile:
    """Durations from a reference table: seconds at `ref_pixels`, scaled by pixel count."""

    name: str
    seconds: Mapping[str, float]
    ref_pixels: int = PAPER_PIXELS
    measured: bool = field(default=False, init=False)

    def duration(self, work: Work) -> float:
        """Simulated seconds of one Work record: reference time x pixels / reference pixels."""
        try:
            ref = self.seconds[work.kind]
        except KeyError:
            known = ", ".join(sorted(self.seconds))
            raise LatencyError(
                f"profile {self.name!r} has no time for work kind {work.kind!r}; known: {known}"
            ) from None
        return ref * work.pixels / self.ref_pixels

    def call_duration(self, work: Sequence[Work], wall_s: float) -> float:
        """Simulated seconds of one agent call: the sum over its Work records."""
        return float(sum(self.duration(w) for w in work))


@dataclass(frozen=True)
class MeasuredProfile:
    """Durations equal to the wall time the agent call really took on this host."""

    name: str = "measured"
    measured: bool = field(default=True, init=False)

    def call_duration(self, work: Sequence[Work], wall_s: float) -> float:
        """Simulated seconds of one agent call: its measured wall time."""
        return float(wall_s)


LatencyProfile = TableProfile | MeasuredProfile

PROFILES: dict[str, LatencyProfile] = {
    "nuc7i5-t4": TableProfile("nuc7i5-t4", NUC7I5_T4_SECONDS),
    "measured": MeasuredProfile(),
}
DEFAULT_PROFILE = "nuc7i5-t4"


def get_profile(name: str) -> LatencyProfile:
    """The named latency profile (`nuc7i5-t4` or `measured`)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise LatencyError(
            f"unknown latency profile {name!r}; known: {', '.join(sorted(PROFILES))}"
        ) from None
