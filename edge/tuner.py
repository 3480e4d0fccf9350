"""The edge's per-second configuration policy (STAC §VI), sans-IO: the `Tuner` interface.

Once per second the edge agent hands its tuner what §VI's network reads: the bitrate the
device sent over the second that ended (Bit_{t-1}), the estimated bandwidth of the next
(Bit^_t), the configuration in force (B_{t-1}, fps_{t-1} or the scheme's own knobs) and the
content of the second that ended (c_{t-1}, d_{t-1}). It returns the next configuration, or
None to keep the current one (a change discards what is still in transmission, §VII).

A tuner is named by a spec string, so it travels in `Stream`, the run options, sweeps and
the emulator's Hello: `fixed` (the fps schedule of fixed-configuration runs),
`offline[:PROFILES.csv]` (STAC-offline, profile lookup), `nn[:WEIGHTS.pt]` (the network of
§VI; also its ablations `nn-no-c`, `nn-no-d`, the same network trained without one input),
`casva-content[:WEIGHTS.pt]` (the network fed CASVA-style content: one pre-encoded frame,
§VIII-E), `nn-safe[:WEIGHTS.pt]` (beyond the paper: the network with a guard that keeps
its choice within the link, edge.tuner_safe), and `auto`, the scheme's own default
(`SCHEME_TUNERS`). Without a file, a spec names what is shipped for the run's model in
edge/tuners/ (`shipped_file`).
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stac.notices import InputWarning
from stac.protocol import Config, Content

#: the tuner of `stac-sim run` when `--tuner` is not given: the scheme's own (SCHEME_TUNERS)
DEFAULT_TUNER = "auto"
#: each scheme's default tuner (`auto`): STAC's network (§VI), profile lookup for the
#: baselines (the paper's treatment of GRACE+ and AccMPEG, §VIII-C), CASVA's own learned
#: policy (§VIII-A); others stay fixed
SCHEME_TUNERS = {"stac": "nn", "uniform": "offline", "grace": "offline", "h264": "offline",
                 "accmpeg": "offline", "casva": "casva-rl"}
#: shipped tuner weights (MODEL.pt, MODEL-nn-no-c.pt, ...) and lookup profiles (MODEL-SCHEME.csv)
TUNER_DIR = Path(__file__).resolve().parent / "tuners"
NETWORKS = ("nn", "nn-no-c", "nn-no-d", "casva-content", "nn-safe")
#: which content a tuner needs from the device: the second's means (§VI) or one frame
#: pre-encoded at the step, CASVA's way (§VIII-E)
FRAME_CONTENT = "frame"
SECOND_CONTENT = "second"


class TunerFileError(ValueError):
    """No tuner file is shipped for that model and scheme; the message says how to make one."""


class Tuner(ABC):
    """A per-second configuration policy (STAC §VI)."""

    name: str = ""
    spec: str = ""  # the resolved spec it was made from (make_tuner), for the run's summary

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


def shipped_file(name: str, model: str | None, scheme: str = "") -> Path:
    """The file a file-less spec `name` means for `model` (a registry name): the network's
    weights edge/tuners/MODEL.pt (MODEL-nn-no-c.pt, MODEL-nn-no-d.pt for the ablations;
    casva-content and nn-safe use MODEL.pt), or the lookup profile edge/tuners/MODEL-SCHEME.csv.
    TunerFileError naming the model and the commands that make it when none is shipped."""
    if name == "offline":
        path = TUNER_DIR / f"{model}-{scheme}.csv"
        fix = (f"profile it with `stac-sim profile --scheme {scheme} --model {model} ...` "
               f"(docs/simulation.md, \"Tuner\") and pass --tuner offline:OUT/profiles.csv")
    else:
        variant = "nn" if name in ("casva-content", "nn-safe") else name
        path = TUNER_DIR / (f"{model}.pt" if variant == "nn" else f"{model}-{variant}.pt")
        fix = (f"profile stac with `stac-sim profile --model {model} ...`, train with "
               f"`stac-sim tuner train PROFILES --variant {variant} --out FILE` "
               f"(docs/simulation.md, \"Tuner\") and pass --tuner {name}:FILE")
    if model is None or not path.is_file():
        what = "lookup profile" if name == "offline" else "tuner weights"
        raise TunerFileError(f"no {what} shipped for model {model or '(unknown)'!r}"
                             f"{f' and scheme {scheme!r}' if name == 'offline' else ''} "
                             f"({path}); {fix}")
    return path


def resolve_spec(spec: str, schedule: Mapping[int, float] | None = None, scheme: str = "",
                 model: str | None = None) -> str:
    """`spec` with `auto` replaced by the scheme's default (fixed under a schedule, and, with
    an `InputWarning`, when nothing is shipped for `model`) and a file-less network or
    lookup spec by the shipped file (`shipped_file`)."""
    name, _, arg = spec.partition(":")
    if name == "auto" and not arg:
        name = "fixed" if schedule else SCHEME_TUNERS.get(scheme, "fixed")
        if name in ("offline", *NETWORKS):
            try:
                shipped_file(name, model, scheme)
            except TunerFileError as e:
                warnings.warn(InputWarning(f"{e}; this run keeps its configuration (tuner "
                                           "fixed)"), stacklevel=2)
                name = "fixed"
    if name in ("offline", *NETWORKS) and not arg:
        arg = str(shipped_file(name, model, scheme))
    return f"{name}:{arg}" if arg else name


def content_source(spec: str) -> str:
    """The content the device measures for tuner `spec`: one pre-encoded frame for
    casva-content, the second's means (§VI) for every other tuner."""
    return FRAME_CONTENT if spec.partition(":")[0] == "casva-content" else SECOND_CONTENT


def make_tuner(spec: str, schedule: Mapping[int, float] | None = None, scheme: str = "",
               model: Any = None) -> Tuner:
    """The tuner named by `spec` (see the module doc); `schedule` is the fixed tuner's;
    `scheme` and `model` (the edge's network, or its registry name) choose what `auto` and
    a file-less spec mean. ValueError naming the known tuners otherwise."""
    if model is not None and not isinstance(model, str):
        from edge.tables import model_name

        model = model_name(model)
    spec = resolve_spec(spec, schedule, scheme, model)
    tuner = _build(spec, schedule)
    tuner.spec = spec
    return tuner


def _build(spec: str, schedule: Mapping[int, float] | None) -> Tuner:
    """The tuner of a resolved spec (no `auto`, files named)."""
    name, _, arg = spec.partition(":")
    if name == "fixed" and not arg:
        return FixedTuner(schedule)
    if schedule:
        raise ValueError(f"a fixed fps schedule needs --tuner fixed, not {spec!r}")
    if name == "offline" and arg:
        from edge.profiles import OfflineTuner, read_profiles

        return OfflineTuner(read_profiles(arg))
    if name in NETWORKS and arg:
        from edge.tuner_net import NetTuner

        tuner = NetTuner.load(arg)
        if name == "nn-safe":
            from edge.tuner_safe import SafeNetTuner

            try:
                return SafeNetTuner(tuner)
            except ValueError as e:
                raise ValueError(f"tuner {spec!r}: {arg}: {e}") from None
        if name == "casva-content":
            if tuner.name != "nn":
                raise ValueError(f"tuner {spec!r}: {arg} holds the weights of {tuner.name!r}, "
                                 "not of the full network 'nn'")
            tuner.name = name  # the same network, fed one pre-encoded frame's content
        elif tuner.name != name:
            raise ValueError(f"tuner {spec!r}: {arg} holds the weights of {tuner.name!r}")
        return tuner
    if name == "casva-rl":  # CASVA's learned policy (scheme casva); no POLICY: the shipped one
        from edge.casva_policy import make_casva_tuner

        return make_casva_tuner(arg)
    raise ValueError(f"unknown tuner {spec!r}; known: auto, fixed, offline[:PROFILES.csv], "
                     "nn[:WEIGHTS.pt], nn-no-c[:WEIGHTS.pt], nn-no-d[:WEIGHTS.pt], "
                     "casva-content[:WEIGHTS.pt], nn-safe[:WEIGHTS.pt], casva-rl[:POLICY.pt]")
