"""Scheme `casva` (issue 17): resolution changes decode and are scored at full resolution,
the table-replay environment's dynamics, deterministic PPO training, the shipped policy
(loads, reacts to a halved bandwidth, its card's validation numbers re-checked)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from device.offload import (
    PRE_ENCODE_QP,
    PRE_ENCODE_SCALE,
    OffloadDevice,
    pre_encode_kbits,
    pre_encoded_seconds,
    scaled_size,
)
from edge.casva_env import (
    MAX_QUEUE_S,
    PRE_ENCODING,
    WINDOW,
    CasvaEnv,
    SecondTrace,
    Tables,
    read_tables,
    recording,
    split_traces,
)
from edge.casva_policy import (
    SHIPPED,
    ActorCritic,
    CasvaPolicy,
    CasvaTuner,
    pre_indicator,
    train,
    validation,
)
from edge.models.base import segment
from edge.models.registry import resolve_model
from edge.offload import OffloadEdge, nal_types
from stac.codec.labels import decode_labels
from stac.codec.reference import X264Decoder
from stac.frames import open_source
from stac.protocol import Config, Content
from stac.schemes import make_scheme
from stac.schemes.base import Stream

TABLES = SHIPPED.parent / "casva_tables.csv"
REPO = SHIPPED.parent.parent.parent


def _frames(n: int, size=(96, 64)) -> list[np.ndarray]:
    src = open_source("default", size=size)
    return [f.rgb for f, _ in zip(src, range(n), strict=False)]


def test_scaled_size_even_and_full_at_one():
    assert scaled_size((480, 204), 1.0) == (480, 204)
    assert scaled_size((480, 204), 0.5) == (240, 102)
    assert scaled_size((480, 270), 0.75) == (360, 202)
    with pytest.raises(ValueError, match="scale"):
        scaled_size((480, 270), 0.0)


def test_resolution_change_decodes_and_is_scored_at_full_resolution():
    """At scale 0.5 the keyframe is a half-size x264 frame; the edge segments it and returns
    labels upsampled (nearest) to the full frame; a change to scale 1 starts a new stream
    (SPS + IDR) at full size."""
    model = resolve_model("untrained:bisenet")
    frames = _frames(3)
    scheme = make_scheme("casva", {"scale": 0.5, "qp": 28, "fps": 25.0})
    built = scheme.build(Stream(source_fps=25.0, frame_size=(96, 64)), model)
    device, edge = built.device, built.edge
    assert isinstance(device, OffloadDevice) and isinstance(edge, OffloadEdge)
    key = device.on_frame(0, 0.0, frames[0]).keyframe
    small = X264Decoder().decode(key.payload)
    assert small.shape == (32, 48, 3)
    out = edge.on_keyframe(key)
    labels = decode_labels(out.feedback.segmentation)
    assert labels.shape == (64, 96)
    own, _ = segment(model, small, model.initial_state())
    assert np.array_equal(labels, cv2.resize(own, (96, 64), interpolation=cv2.INTER_NEAREST))

    device.on_config(built.config.replace(0.04, scale=1.0))
    key = device.on_frame(1, 0.04, frames[1]).keyframe
    assert 7 in nal_types(key.payload)  # a new stream at the new size
    assert X264Decoder().decode(key.payload).shape == (64, 96, 3)
    assert decode_labels(edge.on_keyframe(key).feedback.segmentation).shape == (64, 96)


def test_casva_scheme_passes_conformance_at_a_reduced_resolution(tmp_path, repo_root):
    from stac.schemes.conformance import check_scheme

    check_scheme("casva", tmp_path, repo_root / "traces" / "lte.csv",
                 params={"scale": 0.5, "qp": 32}, emulate=False)


def _hand_tables() -> Tables:
    """Two cells per knob: bits halve with each step down the lists, PA drops by 0.1."""
    scales, fps, qps = (1.0, 0.5), (2.0, 10.0), (24, 40)
    r = np.array([1.0, 0.25])[:, None, None]
    f = np.array([0.4, 1.0])[None, :, None]
    q = np.array([1.0, 0.5])[None, None, :]
    bits = np.broadcast_to(400 * r * f * q, (1, 4, 2, 2, 2)).copy()
    pa = np.broadcast_to(0.9 - 0.1 * (r < 1) - 0.1 * (f < 1) - 0.1 * (q < 1),
                         (1, 4, 2, 2, 2)).copy()
    return Tables(("v",), (4,), scales, fps, qps, bits, pa)


def test_env_delay_queue_and_drops_follow_the_link():
    """400 kbit segments on a 200 kbps link: 1 s beyond the segment, then 2 s (a queue);
    a change of configuration drops the queued keyframes; the queue is capped."""
    tables = _hand_tables()
    env = CasvaEnv(tables, [SecondTrace("f", "t", np.full(60, 200.0))], 1, 3,
                   np.random.default_rng(0))
    env.reset(np.full((1, 11), 200.0), np.array([0]), np.array([0]))
    top = np.array([[0, 1, 0]])  # scale 1, 10 fps, QP 24: 400 kbit
    _, r1, i1 = env.step(top)
    _, r2, i2 = env.step(top)
    assert i1["bits"][0] == 400 and i1["delay"][0] == pytest.approx(1.0)
    assert i2["delay"][0] == pytest.approx(2.0) and i2["dropped"][0] == 0
    assert r2[0] == pytest.approx(0.9 - 0.5 * 2.0)
    _, _, i3 = env.step(np.array([[1, 1, 1]]))  # 50 kbit: the 400 kbit queue is dropped
    assert i3["dropped"][0] == pytest.approx(400 / (400 / 10))
    assert i3["delay"][0] == 0 and i3["pa"][0] == pytest.approx(0.7)
    env.reset(np.full((1, 11), 10.0), np.array([0]), np.array([0]))
    for _ in range(3):
        _, _, info = env.step(top)
    assert env.backlog[0] <= MAX_QUEUE_S * 10.0 + 1e-9 and info["dropped"][0] > 0


def test_split_keeps_recordings_on_one_side_per_family():
    traces = [SecondTrace("fcc", f"trace_{i}_x_part{p}.log", np.ones(60))
              for i in range(6) for p in range(3)]
    traces += [SecondTrace("lte", f"{n}.{d}", np.ones(60)) for n in "ab" for d in ("up", "down")]
    train_tr, val_tr = split_traces(traces)
    assert {recording(t.name) for t in train_tr}.isdisjoint({recording(t.name) for t in val_tr})
    assert {t.family for t in val_tr} == {"fcc", "lte"}


def test_training_is_deterministic_with_a_seed():
    tables = _hand_tables()
    rng = np.random.default_rng(3)
    traces = [SecondTrace(fam, f"{fam}{i}", rng.uniform(20, 600, 80))
              for fam in ("a", "b") for i in range(5)]
    p1, r1 = train(tables, None, updates=2, envs=8, seed=5, traces=traces)
    p2, r2 = train(tables, None, updates=2, envs=8, seed=5, traces=traces)
    for a, b in zip(p1.net.state_dict().values(), p2.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert r1["validation"] == r2["validation"]


def _settle(tuner: CasvaTuner, tables: Tables, config: Config, bandwidths, video: int = 0):
    """Run `tuner` second by second, fed the tables' bits of its own choices and the
    second's pre-encoding (the device's Content); the grid indices in force after each
    second."""
    policy = tuner.policy
    out = []
    for second, bw in enumerate(bandwidths):
        idx = tuple(policy.indices(config))
        s = 1 + second % (tables.seconds[video] - 1)
        bits = float(tables.bits[video, s][idx])
        content = Content(second=second, c=float(tables.pre[video, s]), d=0.0)
        config = tuner.step(second, bits, float(bw), config, content) or config
        out.append(tuple(policy.indices(config)))
    return out


def test_shipped_policy_changes_configuration_when_the_bandwidth_halves():
    """Settled for 8 s at a bandwidth, then 8 s at half of it: the policy never moves to a
    costlier configuration, and at most of the bandwidths it changes configuration."""
    policy = CasvaPolicy.load(SHIPPED)
    tables = read_tables(TABLES)
    cost = tables.mean_bits().reshape(policy.grid)
    changes = 0
    bandwidths = (800.0, 400.0, 200.0, 100.0, 50.0)
    for bw in bandwidths:
        start = Config.of({"qp": 30.0, "scale": 1.0, "fps": 10.0})
        chosen = _settle(CasvaTuner(policy), tables, start, [bw] * 8 + [bw / 2] * 8)
        before, after = chosen[7], chosen[-1]
        assert cost[after] <= cost[before], (bw, before, after)
        changes += before != after
    assert changes >= len(bandwidths) // 2 + 1


@pytest.mark.slow
def test_casva_run_changes_configuration_when_the_bandwidth_halves(tmp_path):
    """`stac-sim run --scheme casva --tuner casva-rl` over a trace that halves after 4 s:
    the scale, fps and QP in seconds.csv after the halving differ from before it."""
    import pandas as pd

    from stac.sim.runner import RunOptions, run
    from stac.traces import Trace, save_trace

    trace = save_trace(Trace(np.array([0.0, 4.0]), np.array([200.0, 100.0]), name="halving",
                             end_s=60.0), tmp_path / "halving.csv")
    run(RunOptions(trace=str(trace), out=str(tmp_path / "run"), scheme=make_scheme("casva"),
                   size=(480, 204), duration=8.0, tuner="casva-rl", use_cache=False))
    sec = pd.read_csv(tmp_path / "run" / "seconds.csv").set_index("second")
    knobs = ["scale", "fps", "qp"]
    assert tuple(sec.loc[3, knobs]) != tuple(sec.loc[7, knobs])


POLICIES = [(SHIPPED, TABLES), (SHIPPED.with_name("casva_policy-v1.pt"), TABLES)] + [
    (SHIPPED.with_name(f"casva_policy-{m}.pt"), TABLES.with_name(f"casva_tables-{m}.csv"))
    for m in ("bisenet",)]


@pytest.mark.parametrize("policy_path,tables_path", POLICIES,
                         ids=[p.stem for p, _ in POLICIES])
def test_shipped_policy_card_numbers_recheck(policy_path, tables_path):
    """The card's validation numbers come out again from each shipped policy and its
    tables (the default model's, and bisenet's kept beside them)."""
    from edge.casva_env import load_families
    from stac.data import data_root

    root = data_root() / "traces"
    if not root.exists():
        pytest.skip(f"no real traces under {root}")
    policy = CasvaPolicy.load(policy_path)
    card = json.loads(policy_path.with_suffix(".json").read_text())
    assert card == policy.card
    _, val = split_traces(load_families(root))
    assert [f"{t.family}/{t.name}" for t in val] == card["traces_val"]
    again = validation(read_tables(tables_path), val, policy, card["seed"])
    assert again == card["validation"]
    assert Path(policy_path).stat().st_size < 200_000
    curve = pd.read_csv(Path(policy_path).with_name(card["curve"]))  # its own reward curve
    assert len(curve) == card["updates"] and curve["episodes"].iloc[-1] == card["episodes"]
    assert card["tables"] == str(Path(tables_path).relative_to(REPO))


def test_auto_tuner_of_the_scheme_is_the_learned_policy():
    """`--tuner auto` (the run's default) gives `casva` its own adaptation, the shipped
    policy, whatever the edge model."""
    built = make_scheme("casva").build(
        Stream(source_fps=25.0, frame_size=(96, 64), tuner="auto"),
        resolve_model("untrained:dabnet"))
    assert isinstance(built.edge.tuner, CasvaTuner)
    assert built.edge.tuner.spec == "casva-rl"


# --- CASVA's content indicator from pre-encoding -------------------------------------------


def _run_device(device: OffloadDevice, frames: list[np.ndarray], fps: float,
                change: dict[int, Config] | None = None) -> tuple[dict[int, Content], list]:
    """Frames through a device at capture times i / fps (configuration changes at given
    indices); the content it reports per second and its Work records."""
    work = []
    for i, rgb in enumerate(frames):
        if change and i in change:
            device.on_config(change[i])
        work += device.on_frame(i, i / fps, rgb).work
    seconds = range(int(np.floor((len(frames) - 1) / fps)) + 1)
    return {s: device.content(s) for s in seconds}, work


def test_device_reports_the_offline_pre_encoding_whatever_the_configuration():
    """The casva device reports, per second, the kilobits of that second's first frame
    encoded alone at the reference configuration: the offline function's value for that
    frame, the same under another resolution/QP and across a configuration change (a real
    x264 IDR at scale 0.5, QP 30: decodes to the reference size), one pre_encode Work a
    second; plain h264 reports nothing."""
    fps = 25.0
    frames = _frames(60, size=(160, 96))
    offline = pre_encoded_seconds((i / fps, f) for i, f in enumerate(frames))
    assert sorted(offline) == [0, 1, 2]
    assert offline[1] == pre_encode_kbits(frames[25]) != offline[0]
    reports = []
    for knobs, change in (({"qp": 24.0, "scale": 1.0, "fps": 10.0}, None),
                          ({"qp": 42.0, "scale": 0.5, "fps": 2.0},
                           {30: Config.of({"qp": 30.0, "scale": 0.75, "fps": 5.0}, 1.2)})):
        device = OffloadDevice("h264", Config.of(knobs), fps, pre_encode=True)
        content, work = _run_device(device, frames, fps, change)
        reports.append({s: c.c for s, c in content.items()})
        assert all(c.second == s and c.d >= 0 for s, c in content.items())
        pre = [w for w in work if w.kind == "pre_encode"]
        assert len(pre) == 3 and pre[0].pixels == 80 * 48
    assert reports[0] == reports[1] == offline
    plain = OffloadDevice("h264", Config.of({"qp": 30.0, "fps": 10.0}), fps)
    content, work = _run_device(plain, frames[:30], fps)
    assert set(content.values()) == {None} and "pre_encode" not in {w.kind for w in work}
    # the pre-encoding is a real IDR frame of the reference size
    small = cv2.resize(frames[0], scaled_size((160, 96), PRE_ENCODE_SCALE),
                       interpolation=cv2.INTER_AREA)
    from stac.codec.reference import X264Encoder

    payload = X264Encoder(80, 48, qp=PRE_ENCODE_QP, fps=1).encode(small)
    assert len(payload) * 8 / 1000 == offline[0]
    assert X264Decoder().decode(payload).shape == (48, 80, 3)


def test_shipped_pre_encoding_table_is_the_device_function_on_the_clip():
    """The shipped side table's bikes seconds 0 and 1 are the reference pre-encoding of the
    clip's frames 0 and 25 at 480x204 (the tables' runs' size and capture times)."""
    import pandas as pd

    src = open_source("default", size=(480, 204))
    assert src.source_fps == 25.0
    frames = [f.rgb for f, _ in zip(src, range(26), strict=False)]
    table = pd.read_csv(PRE_ENCODING).set_index(["video", "second"])["pre_kbits"]
    assert table[("bikes", 0)] == pre_encode_kbits(frames[0])
    assert table[("bikes", 1)] == pre_encode_kbits(frames[25])


def test_env_and_tuner_states_carry_the_pre_encoding_indicator():
    """The environment's state after a segment of clip second s ends with log(pre[s] /
    pre_ref); the tuner's state with log(c / pre_ref) of the device's Content; a policy
    saved before the indicator reads the state without it."""
    tables = read_tables(TABLES)
    assert tables.pre is not None and tables.pre.shape[0] == len(tables.videos)
    ref = tables.pre_ref()
    env = CasvaEnv(tables, [SecondTrace("f", "t", np.full(60, 200.0))], 2, 3,
                   np.random.default_rng(0))
    env.reset(np.full((2, WINDOW + 3), 200.0), np.array([0, 1]), np.array([2, 4]))
    a = np.zeros((2, 3), dtype=np.int64)
    for t in range(3):
        state, _, _ = env.step(a)
        s = 1 + (np.array([2, 4]) + t) % (np.array(tables.seconds) - 1)
        want = np.log(tables.pre[[0, 1], s] / ref)
        np.testing.assert_allclose(state[:, -1], want, rtol=1e-6)
    assert len(set(np.round(tables.pre[0, :10], 3))) > 5  # the indicator varies with content
    policy = CasvaPolicy(ActorCritic((3, 3, 4)), tables.scales, tables.fps, tables.qps,
                         tables.mean_bits(), {}, ref)
    config = Config.of({"qp": 30.0, "scale": 1.0, "fps": 10.0})
    tuner = CasvaTuner(policy)
    state = tuner.state(100.0, 200.0, config, Content(second=3, c=2 * ref, d=5.0))
    assert state[0, -1] == pytest.approx(np.log(2.0)) == pytest.approx(pre_indicator(2 * ref,
                                                                                     ref))
    assert CasvaTuner(policy).state(100.0, 200.0, config, None)[0, -1] == 0
    old = ActorCritic((3, 3, 4), inputs=state.shape[1] - 1)
    x = torch.from_numpy(state)
    y = x.clone()
    y[0, -1] = 3.0
    assert torch.equal(old(x)[1], old(y)[1])
    assert not torch.equal(policy.net(x)[1], policy.net(y)[1])


@pytest.mark.slow
def test_simulator_and_emulator_report_the_pre_encoding(tmp_path, repo_root):
    """Both drivers carry the device's pre-encoding to the edge: seconds.csv's c of a
    `casva` run, simulated and emulated, is the offline function's value for the first
    frame of each second."""
    import pandas as pd

    from stac.emu.local import emulate_local
    from stac.schemes.conformance import RUN
    from stac.sim.runner import run, run_options

    opts = {**RUN, "scheme": make_scheme("casva"), "trace": str(repo_root / "traces" / "lte.csv"),
            "duration": 2.2, "model": "untrained:bisenet"}
    src = open_source("default", size=RUN["size"])
    offline = pre_encoded_seconds((f.t, f.rgb) for f, _ in zip(src, range(55), strict=False))
    for name, drive in (("sim", run), ("emu", emulate_local)):
        drive(run_options({**opts, "out": str(tmp_path / name)}))
        sec = pd.read_csv(tmp_path / name / "seconds.csv").set_index("second")
        assert [sec.loc[s, "c"] for s in (0, 1)] == [offline[0], offline[1]], name
