"""The scheme conformance check: what every registered scheme must satisfy, the analogue of
scikit-learn's `check_estimator`. Third-party schemes can run it on themselves.

`check_scheme(name, workdir, trace)` raises AssertionError (or the scheme's own error) on
the first violation: parameters documented and validated (unknown and out-of-range values
rejected with a SchemeError), the built halves and the starting configuration consistent
with the declared knobs, every `Work` kind known to every latency profile, the default tuner
(`auto`) resolved to the scheme's own, the same outputs
from two simulated runs with the same seed, and the simulator and the emulator (real
loopback sockets) agreeing on a short clip.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stac.agents import DeviceAgent, EdgeAgent
from stac.frames import open_source
from stac.latency import PROFILES, TableProfile
from stac.schemes import SchemeError, SchemeParams, Stream, get_scheme, make_scheme

#: the short run of the determinism and parity checks (a fixed configuration: the parity
#: check compares keyframes, and the emulator adopts a tuner's change a round trip later)
RUN = {"video": "default", "size": (64, 48), "duration": 1.2, "fps": 5.0, "seed": 0,
       "use_cache": False, "tuner": "fixed"}


def check_scheme(name: str, workdir: str | Path, trace: str | Path,
                 model: str = "untrained:bisenet", params: dict[str, Any] | None = None,
                 emulate: bool = True) -> None:
    """Run every conformance check on scheme `name` (with `params` over its defaults), the
    edge model `model` (a `--model` spec; the untrained default checks mechanics only),
    writing runs into `workdir`, over bandwidth `trace`."""
    from edge.models.registry import resolve_model
    from stac.sim.runner import seed_everything

    cls = get_scheme(name)
    check_parameters(cls)
    scheme = make_scheme(name, params)
    seed_everything(RUN["seed"])
    check_work_kinds(scheme, resolve_model(model))
    check_auto_tuner(scheme, resolve_model(model))
    sim = check_deterministic(scheme, model, Path(workdir), trace)
    if emulate:
        check_parity(scheme, model, Path(workdir), trace, sim)


def check_parameters(cls: type[SchemeParams]) -> None:
    """Documented, defaulted parameters; `fps` a knob; bad values and unknown names refused."""
    assert cls.name and cls.__doc__, f"{cls.__name__}: a scheme needs a name and a docstring"
    params = cls.parameters()
    assert params[-1].name == "fps" and params[-1].knob, f"{cls.name}: fps must be a knob"
    defaults = cls()
    for p in params:
        assert p.doc, f"{cls.name}: parameter {p.name} has no doc"
        assert getattr(defaults, p.name) == p.default
        bad = []
        if p.low is not None:
            bad.append(p.low - 1 if not p.low_open else p.low)
        if p.high is not None:
            bad.append(p.high + 1)
        if p.type in (int, float):
            bad += [math.nan, "many", True]
        for value in bad:
            try:
                cls(**{p.name: value})
            except SchemeError:
                continue
            raise AssertionError(f"{cls.name}: {p.name}={value!r} was accepted")
    try:
        make_scheme(cls.name, {"no_such_parameter": 1})
    except SchemeError as e:
        assert all(p.name in str(e) for p in params), f"{cls.name}: {e} lists no parameters"
    else:
        raise AssertionError(f"{cls.name}: an unknown parameter was accepted")


def _drive(scheme, frames: list[np.ndarray]) -> set[str]:
    """Frames through the device, keyframes through the edge, feedback back; Work kinds."""
    kinds = set()
    for i, rgb in enumerate(frames):
        out = scheme.device.on_frame(i, i / 25.0, rgb)
        kinds |= {w.kind for w in out.work}
        if out.keyframe is not None:
            edge_out = scheme.edge.on_keyframe(out.keyframe)
            kinds |= {w.kind for w in edge_out.work}
            kinds |= {w.kind for w in scheme.device.on_feedback(edge_out.feedback)}
    return kinds


def check_work_kinds(scheme: SchemeParams, model: Any) -> None:
    """The built halves are agents, the configuration carries exactly the declared knobs,
    and every Work kind they report has a time in every table latency profile."""
    size = RUN["size"]
    built = scheme.build(Stream(source_fps=25.0, frame_size=size), model)
    assert isinstance(built.device, DeviceAgent) and isinstance(built.edge, EdgeAgent)
    assert tuple(built.config.as_dict()) == scheme.knob_names(), (
        f"{scheme.name}: configuration {built.config} does not carry the knobs "
        f"{scheme.knob_names()}")
    frames = [f.rgb for f in open_source("default", size=size, max_frames=8)]
    kinds = _drive(built, frames)
    assert kinds, f"{scheme.name}: no Work reported"
    for profile in PROFILES.values():
        if isinstance(profile, TableProfile):
            missing = kinds - set(profile.seconds)
            assert not missing, f"{scheme.name}: profile {profile.name} has no time for {missing}"


def check_auto_tuner(scheme: SchemeParams, model: Any) -> None:
    """A scheme built with the default tuner (`auto`) gets its own (`edge.tuner.SCHEME_TUNERS`
    for the model), which needs the build to pass its name and model to `make_tuner`."""
    import warnings

    from edge.tables import model_name
    from edge.tuner import resolve_spec

    with warnings.catch_warnings():  # nothing shipped for this model: fixed, with a warning
        warnings.simplefilter("ignore")
        built = scheme.build(Stream(source_fps=25.0, frame_size=RUN["size"], tuner="auto"),
                             model)
        expected = resolve_spec("auto", None, scheme.name, model_name(model))
    tuner = getattr(built.edge, "tuner", None)
    if tuner is not None:
        assert tuner.spec == expected, (
            f"{scheme.name}: built with tuner auto, its edge's tuner is {tuner.spec!r}, not the "
            f"scheme's own {expected!r} (pass the scheme's name and model to make_tuner)")


def _run(scheme: SchemeParams, model: str, out: Path, trace: str | Path):
    from stac.sim.runner import run, run_options

    run(run_options({**RUN, "scheme": scheme, "trace": str(trace), "out": str(out),
                     "model": model}))
    return (pd.read_csv(out / "frames.csv"), pd.read_csv(out / "seconds.csv"))


def check_deterministic(scheme: SchemeParams, model: str, workdir: Path,
                        trace: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two simulated runs with the same seed write the same CSVs, byte for byte; returns
    the run's (frames, seconds) tables."""
    for i in (1, 2):
        _run(scheme, model, workdir / f"{scheme.name}-sim{i}", trace)
    for csv in ("frames.csv", "seconds.csv"):
        a = (workdir / f"{scheme.name}-sim1" / csv).read_bytes()
        b = (workdir / f"{scheme.name}-sim2" / csv).read_bytes()
        assert a == b, f"{scheme.name}: {csv} differs between two runs with the same seed"
    return (pd.read_csv(workdir / f"{scheme.name}-sim1" / "frames.csv"),
            pd.read_csv(workdir / f"{scheme.name}-sim1" / "seconds.csv"))


def check_parity(scheme: SchemeParams, model: str, workdir: Path, trace: str | Path,
                 sim: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """The emulator (loopback sockets, wall clock) agrees with the simulator's (frames,
    seconds) tables `sim` of the same run: the same schema, frames and keyframes, the same
    bytes for the first keyframe (encoded before any feedback), every keyframe delivered
    in both."""
    from stac.emu.local import emulate_local
    from stac.sim.runner import run_options

    sim_frames, sim_seconds = sim
    out = workdir / f"{scheme.name}-emu"
    emulate_local(run_options({**RUN, "scheme": scheme, "trace": str(trace),
                               "out": str(out), "model": model}))
    emu_frames = pd.read_csv(out / "frames.csv")
    emu_seconds = pd.read_csv(out / "seconds.csv")
    assert list(sim_frames.columns) == list(emu_frames.columns)
    assert list(sim_seconds.columns) == list(emu_seconds.columns)
    assert sim_frames["frame"].tolist() == emu_frames["frame"].tolist()
    ka = sim_frames[sim_frames["keyframe"] == 1]
    kb = emu_frames[emu_frames["keyframe"] == 1]
    assert ka["frame"].tolist() == kb["frame"].tolist(), f"{scheme.name}: keyframes differ"
    assert ka["bytes"].iloc[0] == kb["bytes"].iloc[0], f"{scheme.name}: first keyframe bytes"
    assert ka["t_arrived"].notna().all() and kb["t_arrived"].notna().all()
