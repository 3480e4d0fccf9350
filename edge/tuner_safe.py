"""`nn-safe`: the §VI network with a guard that keeps its choice within the link (beyond the
paper; the paper's `nn` is unchanged).

Why: §VI's labels pick the most accurate configuration whose bitrate fits the bandwidth, but
a configuration's bitrate changes from one second to the next with the content (in the
profiles of the default model, one configuration's next-second bitrate is 1.3x its last at
the 80th percentile), and the network's output is a regression rounded to the grid, so the
`nn` tuner sends above the link in about a third of the seconds (docs/benchmarks.md).

How, each second: predict what each configuration k would send from what the device
measurably sent under the current configuration j, level(j) x cost(k) / cost(j), with
level(j) the mean bitrate of j's last `k` seconds (without its first, the intra restart
of a change, §VII; one second's bitrate at a few keyframes per second swings with the
content) and cost the configuration's mean bitrate over the tuner's training profiles
(kept in the weights). The budget is the bandwidth estimate divided by (1 + the largest relative
under-prediction of the last `k` seconds), RobustMPC's discount (Yin et al., SIGCOMM 2015,
§4.3) applied to the stream's own bitrate rather than the link's. The network's choice is
kept when its prediction fits the budget; otherwise the configuration that fits and is
nearest to it on the grid (steps of B plus steps of fps; a tie goes to the one predicted to
send more), and the cheapest one when none fits. No constant is tuned to a clip: the margin
is measured online from the run's own errors.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from edge.tuner import Tuner, changed
from edge.tuner_net import NetTuner
from stac.protocol import Config, Content

#: seconds of prediction errors the budget's discount looks back over (RobustMPC's window,
#: the `robust` estimator's default too)
ERROR_WINDOW = 5


class SafeNetTuner(Tuner):
    """The §VI network (`nn`) whose choice must fit the budget (see the module doc)."""

    name = "nn-safe"

    def __init__(self, net: NetTuner, k: int = ERROR_WINDOW) -> None:
        if net.name != "nn":
            raise ValueError(f"nn-safe guards the full network 'nn', not {net.name!r}")
        if not net.costs:
            raise ValueError("these tuner weights carry no per-configuration costs (saved "
                             "before nn-safe); retrain them with `stac-sim tuner train` "
                             "(the command is on their card)")
        if k < 1:
            raise ValueError(f"nn-safe needs an error window of k >= 1 seconds, got {k}")
        self.net = net
        self.k = k
        self.cost = {(float(b), float(f)): float(kbps) for b, f, kbps in net.costs}
        self.keys = sorted(self.cost)
        grid_B, grid_fps = sorted({b for b, _ in self.keys}), sorted({f for _, f in self.keys})
        #: each configuration's place on the grid (steps of B, steps of fps)
        self.place = {key: (grid_B.index(key[0]), grid_fps.index(key[1])) for key in self.keys}
        self._errors: deque[float] = deque(maxlen=k)  # under-predictions, last k seconds
        self._predicted: tuple[int, float] | None = None  # (second, kbps) predicted for it
        # (configuration, kbps) of the last k + 1 seconds: enough for `level`
        self._sent: deque[tuple[tuple[float, float], float]] = deque(maxlen=k + 1)

    def nearest(self, b: float, fps: float) -> tuple[float, float]:
        """The profiled configuration nearest (B, fps), in log space."""
        return min(self.keys, key=lambda key: abs(math.log(key[0] / b))
                   + abs(math.log(key[1] / fps)))

    def predict(self, level_kbps: float, current: tuple[float, float]
                ) -> dict[tuple[float, float], float]:
        """{(B, fps): kbps predicted for the next second} from the bitrate `level_kbps` of
        `current` and the profiled costs."""
        base = self.cost[self.nearest(*current)]
        return {key: level_kbps * kbps / base for key, kbps in self.cost.items()}

    def level(self) -> float:
        """The current configuration's bitrate: the mean over its last `k` seconds, leaving
        out its first when it has more (a change restarts the stream intra, §VII)."""
        current = self._sent[-1][0]
        run = []
        for key, kbps in reversed(self._sent):
            if key != current:
                break
            run.append(kbps)
        run.reverse()
        return float(np.mean(run[1:][-self.k:] if len(run) > 1 else run))

    def budget(self, second: int, bitrate_kbps: float, bandwidth_kbps: float) -> float:
        """The estimate discounted by the largest recent under-prediction of the stream's
        own bitrate (the prediction made for `second` is scored here)."""
        if self._predicted is not None and self._predicted[0] == second \
                and self._predicted[1] > 0:
            self._errors.append(max(0.0, bitrate_kbps / self._predicted[1] - 1.0))
        return bandwidth_kbps / (1.0 + max(self._errors, default=0.0))

    def choose(self, proposal: tuple[float, float], predicted: dict[tuple[float, float], float],
               budget: float) -> tuple[float, float]:
        """The proposal if it fits `budget`; else the fitting configuration nearest it on
        the grid (tie: the one predicted to send more); the cheapest when none fits."""
        proposal = self.nearest(*proposal)
        if predicted[proposal] <= budget:
            return proposal
        fits = [key for key in self.keys if predicted[key] <= budget]
        if not fits:
            return min(self.keys, key=predicted.__getitem__)
        (ib, jf) = self.place[proposal]
        return min(fits, key=lambda key: (abs(self.place[key][0] - ib)
                                          + abs(self.place[key][1] - jf), -predicted[key]))

    def step(self, second: int, bitrate_kbps: float, bandwidth_kbps: float, config: Config,
             content: Content | None) -> Config | None:
        """The network's next (B, fps), kept within the budget; None without content or an
        estimate (as `nn`)."""
        proposed = self.net.step(second, bitrate_kbps, bandwidth_kbps, config, content)
        current = self.nearest(config["B"], config.fps)
        self._sent.append((current, bitrate_kbps))
        if content is None or not math.isfinite(bandwidth_kbps):
            return None
        budget = self.budget(second, bitrate_kbps, bandwidth_kbps)
        nxt = proposed if proposed is not None else config
        if (level := self.level()) <= 0:  # nothing sent yet: no level to predict from
            self._predicted = None
            return proposed
        predicted = self.predict(level, current)
        b, fps = self.choose((nxt["B"], nxt.fps), predicted, budget)
        self._predicted = (second + 1, predicted[(b, fps)])
        return changed(config, second, {"B": float(b), "fps": float(fps)})
