"""Scheme `stac` end to end: device and edge agents exchanging real bytes on a real clip."""

from __future__ import annotations

import numpy as np
import pytest

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
def clip(shared_data):
    video = shared_data / "videos" / "solidWhiteRight.mp4"
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
    config = Config(B=B, fps=25 / 3, t_effective=0.0)
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


TABLES_FOR_SIM: dict[str, str] = {}


def _stac_with_tables(config, model):
    """Scheme `stac` with a table file (the run options do not carry one yet)."""
    import dataclasses

    from stac.schemes import stac

    return stac(dataclasses.replace(config, tables=TABLES_FOR_SIM["path"]), model)


@pytest.mark.slow
def test_stac_runs_in_the_simulator(tmp_path, monkeypatch, repo_root):
    import pandas as pd

    from edge.models.registry import build_model
    from edge.tables import average_gradients, save_tables
    from stac import schemes
    from stac.sim.runner import RunOptions, run

    model = build_model("bisenet").eval()
    frames = [f.rgb for f in open_video(schemes_default_clip(), size=(160, 68), max_frames=2)]
    avg = average_gradients(model, frames)
    TABLES_FOR_SIM["path"] = str(save_tables(build_tables(avg.mean(), avg.coefficients),
                                             tmp_path / "tables"))
    monkeypatch.setitem(schemes._FACTORIES, "stac", f"{__name__}:_stac_with_tables")
    out = tmp_path / "run"
    run(RunOptions(trace=str(repo_root / "traces" / "lte.csv"), out=str(out), scheme="stac",
                   model="untrained:bisenet", duration=1.0, fps=5.0, size=(160, 68), B=0.01,
                   use_cache=False))
    frames_csv = pd.read_csv(out / "frames.csv")
    assert len(frames_csv) == 25 and frames_csv["keyframe"].sum() == 5
    later = frames_csv[(frames_csv["keyframe"] == 0) & (frames_csv["frame"] > 5)]
    # non-keyframes show results propagated from an earlier keyframe, scored against GT
    assert (later["result_age_frames"] > 0).all() and later["pa"].notna().all()
    assert (frames_csv.loc[frames_csv["keyframe"] == 1, "bytes"] > 0).all()


def schemes_default_clip():
    from stac.frames import default_clip_path

    return default_clip_path()
