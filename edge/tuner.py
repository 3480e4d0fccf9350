"""The edge's per-second configuration policy (STAC §VI), sans-IO: the `Tuner` interface.

Once per second the edge agent hands its tuner what §VI's network reads: the bitrate the
device sent over the second that ended (Bit_{t-1}), the estimated bandwidth of the next
(Bit^_t), the configuration in force (B_{t-1}, fps_{t-1} or the scheme's own knobs) and the
content of the second that ended (c_{t-1}, d_{t-1}). It returns the next configuration, or
None to keep the current one (a change discards what is still in transmission, §VII).

A tuner is named by a spec string, so it travels in `Stream`, the run options, sweeps and
the emulator's Hello: `fixed` (the fps schedule of fixed-configuration runs; today's
behaviour), `offline:PROFILES.csv` (STAC-offline, profile lookup), `nn:WEIGHTS.pt`
(the network of §VI; also its ablations `nn-no-c`, `nn-no-d`, which are the same network
trained without one input and are named by their weights' card).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping

from stac.protocol import Config, Content

#: the tuner of `stac-sim run` when `--tuner` is not given (no adaptation)
DEFAULT_TUNER = "fixed"


class Tuner(ABC):
    """A per-second configuration policy (STAC §VI)."""

    name: str = ""

    @abstractmethod
    def step(self, second: int, bitrate_kbps: float, bandwidth_kbps: float, config: Config,
             content: Content | None) -> Config | None:
        """Second `second` ended: the configuration from `second + 1` on, or None to keep
        `config`. `bandwidth_kbps` is the estimate for the next second (NaN: none yet)."""


class FixedTuner(Tuner):
    """No adaptation: the configuration changes only where a fixed fps `schedule`
    {second: fps} says (fixed-configuration sweeps, tests of the §VII discard rule)."""

    name = "fixed"

    def __init__(self, schedule: Mapping[int, float] | None = None) -> None:
        self.schedule = {int(k): float(v) for k, v in dict(schedule or {}).items()}
        if any(not fps > 0 for fps in self.schedule.values()):
            raise ValueError(f"scheduled fps must be > 0, got {self.schedule}")

    def step(self, second: int, bitrate_kbps: float, bandwidth_kbps: float, config: Config,
             content: Content | None) -> Config | None:
        """The scheduled fps for `second + 1`, if any."""
        fps = self.schedule.get(second + 1)
        if fps is None:
            return None
        return config.replace(float(second + 1), fps=fps)


def changed(config: Config, second: int, knobs: Mapping[str, float]) -> Config | None:
    """`config` with `knobs` from `second + 1` on, or None when nothing changes (a change
    discards what is in transmission, so a tuner never restarts the same configuration)."""
    if all(math.isclose(config[k], float(v)) for k, v in knobs.items()):
        return None
    return config.replace(float(second + 1), **{k: float(v) for k, v in knobs.items()})


def make_tuner(spec: str, schedule: Mapping[int, float] | None = None) -> Tuner:
    """The tuner named by `spec` ("fixed", "offline:PROFILES.csv", "nn:WEIGHTS.pt");
    `schedule` is the fixed tuner's. ValueError naming the known tuners otherwise."""
    name, _, arg = spec.partition(":")
    if name == "fixed" and not arg:
        return FixedTuner(schedule)
    if schedule:
        raise ValueError(f"a fixed fps schedule needs --tuner fixed, not {spec!r}")
    if name == "offline" and arg:
        from edge.profiles import OfflineTuner, read_profiles

        return OfflineTuner(read_profiles(arg))
    if name in ("nn", "nn-no-c", "nn-no-d") and arg:
        from edge.tuner_net import NetTuner

        tuner = NetTuner.load(arg)
        if tuner.name != name:
            raise ValueError(f"tuner {spec!r}: {arg} holds the weights of {tuner.name!r}")
        return tuner
    if name == "casva-rl":  # CASVA's learned policy (scheme casva); no POLICY: the shipped one
        from edge.casva_policy import make_casva_tuner

        return make_casva_tuner(arg)
    raise ValueError(f"unknown tuner {spec!r}; known: fixed, offline:PROFILES.csv, "
                     "nn:WEIGHTS.pt, nn-no-c:WEIGHTS.pt, nn-no-d:WEIGHTS.pt, "
                     "casva-rl[:POLICY.pt]")
