"""Scheme `stac` end to end: device and edge agents exchanging real bytes on a real clip."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import build_scheme

from device.stac_agent import StacDevice
from edge.gradients import dct_gradients
from edge.models.registry import build_model
from edge.stac_agent import StacEdge
from edge.tables import GradientAverager, build_tables
from stac.codec.labels import decode_labels
from stac.codec.quant import region_grid_shape
from stac.frames import open_video
from stac.protocol import Config

W, H = 160, 120


@pytest.fixture(scope="module")
def clip(dataset):
    video = dataset("videos") / "solidWhiteRight.mp4"
    return [f.rgb for f in open_video(video, size=(W, H), max_frames=13)]


@pytest.fixture(scope="module")
def model():
    import torch

    torch.manual_seed(0)
    return build_model("bisenet").eval()  # untrained: mechanics, not accuracy


def run_pair(model, clip, tables, B=0.05):
    """Device and edge in lockstep; each keyframe's feedback arrives two frames later."""
    import torch

    torch.manual_seed(0)
    config = Config.of({"B": B, "fps": 25 / 3})
    device = StacDevice(tables, config, source_fps=25, frame_size=(W, H))
    edge = StacEdge(model, tables, config)
    outputs, pending, payloads = [], {}, []
    for i, frame in enumerate(clip):
        if i in pending:
            device.on_feedback(pending.pop(i))
        out = device.on_frame(i, i / 25, frame)
        outputs.append(out)
        if out.keyframe is not None:
            payloads.append(out.keyframe.payload)
            pending[i + 2] = edge.on_keyframe(out.keyframe).feedback
            edge.levels_of = getattr(edge, "levels_of", {})
            edge.levels_of[i] = decode_labels(pending[i + 2].levels)
            assert np.array_equal(edge.levels_of[i], edge.last_levels)
    return device, edge, outputs, payloads


@pytest.mark.slow
def test_stac_agents_exchange_real_bytes_and_propagate(model, clip):
    avg = GradientAverager()
    grads, _ = dct_gradients(model, clip[0])
    avg.add(grads.planes)
    tables = build_tables(avg.mean(), avg.coefficients).table_set()
    device, edge, outputs, payloads = run_pair(model, clip, tables)
    keys = [i for i, o in enumerate(outputs) if o.keyframe is not None]
    assert keys == [0, 3, 6, 9, 12]
    assert outputs[0].segmentation is None  # nothing fed back yet
    for i in range(2, 13):  # the result of keyframe 0 arrives at frame 2
        out = outputs[i]
        assert out.segmentation is not None and out.segmentation.shape == (H, W)
        assert out.result_index == max(k for k in keys if k + 2 <= i)
        assert out.propagated == (out.result_index != i)
    grid = region_grid_shape(H, W)
    info = device.keyframes
    assert info[0].intra and np.all(info[0].levels_prime == tables.levels // 2)  # middle level
    assert not info[1].intra and info[1].residual is not None
    # From keyframe 6 on, l' is the edge's Algorithm-1 map of an earlier keyframe, propagated
    assert not np.all(info[2].levels_prime == tables.levels // 2)
    assert all(k.levels.shape == grid for k in info)
    # The device holds the level map the edge chose for keyframe 9 (fed back at frame 11),
    # carried as PNG bytes in the feedback.
    np.testing.assert_array_equal(device._levels, edge.levels_of[9])
    assert edge.levels_of[9].shape == grid
    content = device.content(0)
    assert content.c > 0 and content.d > 0
    # Deterministic: the same inputs give the same bytes.
    _, _, _, again = run_pair(model, clip, tables)
    assert again == payloads
    # A tighter bound B selects finer levels and sends more bytes.
    _, edge_fine, _, fine = run_pair(model, clip, tables, B=0.005)
    assert edge_fine.last_levels.mean() < edge.last_levels.mean()
    assert sum(map(len, fine)) > sum(map(len, payloads))


@pytest.mark.slow
def test_stac_runs_in_the_simulator(tmp_path, repo_root):
    import pandas as pd

    from edge.models.registry import build_model
    from edge.tables import average_gradients, save_tables
    from stac.sim.runner import run, run_options

    model = build_model("bisenet").eval()
    frames = [f.rgb for f in open_video(schemes_default_clip(), size=(160, 68), max_frames=2)]
    avg = average_gradients(model, frames)
    tables = str(save_tables(build_tables(avg.mean(), avg.coefficients), tmp_path / "tables"))
    out = tmp_path / "run"
    run(run_options(dict(trace=str(repo_root / "traces" / "lte.csv"), out=str(out), scheme="stac",
                   model="untrained:bisenet", duration=1.0, fps=5.0, size=(160, 68), B=0.01,
                   tables=tables, use_cache=False)))
    frames_csv = pd.read_csv(out / "frames.csv")
    assert len(frames_csv) == 25 and frames_csv["keyframe"].sum() == 5
    later = frames_csv[(frames_csv["keyframe"] == 0) & (frames_csv["frame"] > 5)]
    # non-keyframes show results propagated from an earlier keyframe, scored against GT
    assert (later["result_age_frames"] > 0).all() and later["pa"].notna().all()
    assert (frames_csv.loc[frames_csv["keyframe"] == 1, "bytes"] > 0).all()


def schemes_default_clip():
    from stac.frames import default_clip_path

    return default_clip_path()


# --- scheme `uniform`, and the options that reach `stac` / `uniform` from RunOptions and the CLI

SMALL = (96, 64)


@pytest.fixture(scope="module")
def small_frames():
    from stac.frames import open_source

    return [f.rgb for f in open_source("default", size=SMALL, max_frames=8)]


def _uniform(level, model, fps=25 / 3):
    return build_scheme("uniform", model, SMALL, fps=fps, level=level)


def test_uniform_one_level_propagation_and_own_codec(small_frames, untrained_drn):
    from edge.offload import segment
    from stac.codec.decoder import Decoder

    scheme = _uniform(12, untrained_drn)
    dev, edge = scheme.device, scheme.edge
    assert scheme.config.as_dict() == {"level": 12.0, "fps": 25 / 3}  # the scheme's knobs
    decoder = Decoder(dev.tables)
    outs = []
    for i, frame in enumerate(small_frames):
        out = dev.on_frame(i, i / 25, frame)
        outs.append(out)
        if out.keyframe is not None:
            fb = edge.on_keyframe(out.keyframe).feedback
            assert fb.index == i and fb.levels == b""  # no Algorithm 1
            expected, _ = segment(untrained_drn, decoder.decode(out.keyframe.payload))
            np.testing.assert_array_equal(decode_labels(fb.segmentation), expected)
            dev.on_feedback(fb)
    assert [i for i, o in enumerate(outs) if o.keyframe is not None] == [0, 3, 6]
    info = dev.keyframes
    assert all(np.all(k.levels == 12) and k.residual is None for k in info)
    assert info[0].intra and not info[1].intra  # IPPP on the project codec
    # frames after a keyframe show its segmentation warped by the flow (propagated)
    assert outs[1].result_index == 0 and outs[1].propagated
    assert outs[4].result_index == 3 and outs[4].propagated
    assert all("predictive_coding" not in [w.kind for w in o.work] for o in outs)


def test_uniform_coarser_level_fewer_bytes(small_frames, untrained_drn):
    sizes = {}
    for level in (6, 20):
        dev = _uniform(level, untrained_drn, fps=25.0).device
        sizes[level] = sum(len(dev.on_frame(i, i / 25, f).keyframe.payload)
                           for i, f in enumerate(small_frames))
    assert sizes[6] > 1.5 * sizes[20]


def test_uniform_default_and_bad_levels(untrained_drn):
    from stac.schemes import SchemeError

    assert _uniform(None, untrained_drn).config["level"] == 16.0  # middle of 32 shipped tables
    for bad in (-1, 32):
        with pytest.raises(SchemeError, match="level"):
            _uniform(bad, untrained_drn)


def test_grace_codes_every_keyframe_alone(small_frames, untrained_drn):
    """GRACE+ (§VIII-A): the same level, tables and propagation as `uniform`, but every
    keyframe an individual (intra) image, so it costs more bytes on a moving clip; no
    keyframe of either carries the table set, which the edge holds."""
    from stac.codec.bitstream import parse_header

    sent = {}
    for name in ("grace", "uniform"):
        scheme = build_scheme(name, untrained_drn, SMALL, fps=25 / 3, level=12)
        outs = []
        for i, frame in enumerate(small_frames):
            outs.append(scheme.device.on_frame(i, i / 25, frame))
            if outs[-1].keyframe is not None:
                fb = scheme.edge.on_keyframe(outs[-1].keyframe).feedback
                assert fb.index == i and fb.levels == b""
                scheme.device.on_feedback(fb)
        keys = [o.keyframe.payload for o in outs if o.keyframe is not None]
        headers = [parse_header(k)[0] for k in keys]
        assert all(h.tables is None for h in headers)
        assert [h.intra for h in headers] == ([True] * 3 if name == "grace"
                                              else [True, False, False])
        assert all(np.all(k.levels == 12) for k in scheme.device.keyframes)
        assert outs[4].result_index == 3 and outs[4].propagated
        sent[name] = sum(map(len, keys[1:]))
    assert sent["grace"] > 1.2 * sent["uniform"]


def test_run_options_reach_the_scheme():
    from stac.frames import open_source
    from stac.sim.runner import run_options, stream_of

    source = open_source("default", size=SMALL)
    options = run_options({"trace": "t.csv", "out": "o", "scheme": "stac", "B": 3.5,
                           "tables": "x.npz", "fps": 5.0, "schedule": {2: 4.0}})
    assert options.scheme.get_params() == {"B": 3.5, "tables": "x.npz", "fps": 5.0}
    assert run_options(options.to_dict() | {"out": "o"}) == options  # a round trip
    stream = stream_of(options, source)
    assert stream.schedule == {2: 4.0} and stream.frame_size == SMALL
    assert stream.source_fps == 25.0
    with pytest.raises(ValueError, match="scheme 'uniform' has no parameter B"):
        run_options({"trace": "t.csv", "out": "o", "scheme": "uniform", "B": 3.5})


def test_cli_tables_option_is_used(tmp_path, repo_root, capsys):
    from stac.cli import main

    rc = main(["run", "--trace", str(repo_root / "traces" / "lte.csv"), "--scheme", "stac",
               "--B", "1", "--tables", str(tmp_path / "missing.npz"), "--size", "96x64",
               "--duration", "0.2", "--threads", "1", "--no-cache", "--out", str(tmp_path)])
    assert rc == 2 and "missing.npz" in capsys.readouterr().err


def _cli_run(tmp_path, repo_root, name, *args, size="160x68", duration="1"):
    import pandas as pd

    from stac.cli import main

    out = tmp_path / name
    argv = ["run", "--trace", str(repo_root / "traces" / "lte.csv"), "--fps", "5",
            "--duration", duration, "--threads", "1", "--tuner", "fixed", "--out", str(out),
            *args]
    if size is not None:
        argv += ["--size", size]
    assert main(argv) == 0
    return pd.read_csv(out / "frames.csv")


@pytest.fixture
def gt_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STAC_CACHE", str(tmp_path_factory.getbasetemp() / "stac-cache"))


@pytest.mark.slow
def test_cli_B_level_and_tables_change_the_bytes(tmp_path, repo_root, gt_cache):
    """Each option reaches the scheme: the shipped bisenet and its shipped tables."""
    def key_bytes(frames):
        return frames.loc[frames["keyframe"] == 1, "bytes"].mean()

    fine = _cli_run(tmp_path, repo_root, "fine", "--scheme", "stac", "--B", "0.5")
    coarse = _cli_run(tmp_path, repo_root, "coarse", "--scheme", "stac", "--B", "20")
    assert key_bytes(coarse) < 0.8 * key_bytes(fine)  # larger B: coarser tables
    other = _cli_run(tmp_path, repo_root, "other", "--scheme", "stac", "--B", "20",
                     "--tables", str(repo_root / "edge" / "tables" / "drn_d_22.npz"))
    assert key_bytes(other) != key_bytes(coarse)
    low = _cli_run(tmp_path, repo_root, "low", "--scheme", "uniform", "--level", "4")
    high = _cli_run(tmp_path, repo_root, "high", "--scheme", "uniform", "--level", "24")
    assert key_bytes(high) < 0.5 * key_bytes(low)
    later = high[(high["keyframe"] == 0) & (high["frame"] > 5)]
    assert (later["result_age_frames"] > 0).all() and later["pa"].notna().all()


@pytest.mark.slow
def test_cli_stac_acceptance_command(tmp_path, repo_root, gt_cache):
    """The issue's acceptance command, on the default clip at its own size."""
    frames = _cli_run(tmp_path, repo_root, "accept", "--scheme", "stac", "--B", "2",
                      size=None, duration="2")
    assert len(frames) == 50 and frames["keyframe"].sum() == 10
    later = frames[frames["frame"] > 5]
    non_key = later[later["keyframe"] == 0]
    assert (non_key["result_age_frames"] > 0).all() and non_key["pa"].notna().all()
    assert non_key["pa"].mean() > 0.5  # the shipped model, propagated: still close to GT


def test_levels_restart_from_the_middle_after_a_shot_cut(small_frames):
    """A keyframe after a shot cut gets the middle level (§V-B, as the first frame: the
    cached strategy has no corresponding content), not the levels propagated across it."""
    from edge.tables import TABLE_DIR, load_tables
    from stac.codec.labels import encode_labels
    from stac.protocol import Feedback

    tables = load_tables(TABLE_DIR / "bisenet.npz").table_set()
    grid = region_grid_shape(SMALL[1], SMALL[0], 6)
    fed = encode_labels(np.full(grid, 3, np.uint8))
    seg = encode_labels(np.zeros(SMALL[::-1], np.uint8))

    def levels_prime(cut_at, **kw):
        dev = StacDevice(tables, Config.of({"B": 1.0, "fps": 25 / 3}), 25.0, SMALL,
                         **kw)
        for i, frame in enumerate(small_frames[:7]):
            dev.on_frame(i, i / 25, 255 - frame if cut_at is not None and i >= cut_at
                         else frame)
            if i in (0, 3):  # each keyframe's feedback before the next frame
                dev.on_feedback(Feedback(index=i, segmentation=seg, levels=fed))
        return [k.levels_prime for k in dev.keyframes]

    middle = tables.levels // 2
    first, after, later = levels_prime(cut_at=None)
    assert np.all(first == middle) and np.all(after == 3) and np.all(later == 3)
    first, after, later = levels_prime(cut_at=2)  # cut between frames 1 and 2
    assert np.all(after == middle)  # no propagation across the cut
    assert np.all(later == 3)  # the anchor (3) is after the cut: propagate again
    _, after, _ = levels_prime(cut_at=2, cut_threshold=None)  # the rule off: propagated
    assert np.all(after == 3)
    with pytest.raises(ValueError, match="cut_threshold"):
        StacDevice(tables, Config.of({"B": 1.0, "fps": 5.0}), 25.0, SMALL,
                   cut_threshold=0)
