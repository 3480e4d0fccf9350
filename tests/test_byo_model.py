"""Bring your own model: `--model` specs (`resolve_model`), the streaming wrapper of a
user's RGB -> logits module, and C != 11 classes through ground truth, gradients, tables
and `stac-sim run` (the 5-class model of tests/byo_model.py, fixed seeded weights)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from byo_model import five_class

from edge.gradients import dct_gradients
from edge.models.base import ModelError, segment
from edge.models.external import ExternalSegmenter, is_torchscript
from edge.models.registry import build_model, resolve_model, save_checkpoint
from edge.tables import TableFileError, tables_for
from stac.cli import main as stac_sim
from stac.codec.labels import decode_labels
from stac.codec.transform import coeffs_to_rgb_torch, rgb_to_coeffs
from stac.frames import open_source
from stac.groundtruth import GroundTruth

pytestmark = pytest.mark.usefixtures("one_thread")
FIVE = "byo_model:five_class"


@pytest.fixture(scope="module")
def frames():
    return [f.rgb for _, f in zip(range(3), open_source("default", size=(64, 48)), strict=False)]


@pytest.fixture()
def torchscript(tmp_path):
    path = tmp_path / "five.pt"
    torch.jit.trace(five_class().eval(), torch.rand(1, 3, 32, 32)).save(str(path))
    return path


def test_callable_model_is_wrapped_with_its_class_count(frames):
    model = resolve_model(FIVE)
    assert isinstance(model, ExternalSegmenter) and model.num_classes == 5
    assert not model.training and model.initial_state() is None
    x = torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255
    x = x[..., :47, :63]  # odd sizes: the module's half-resolution logits are upsampled
    logits, state = model.step(x, None)
    assert logits.shape == (1, 5, 47, 63) and state is None
    raw = five_class()(x)  # same weights every call (seeded)
    assert raw.shape[-2:] == (24, 32)
    expected = F.interpolate(raw, size=(47, 63), mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, expected)
    labels, _ = segment(model, frames[0])
    assert labels.max() < 5 and len(np.unique(labels)) > 1


def test_torchscript_file_matches_the_module(frames, torchscript, tmp_path):
    assert is_torchscript(torchscript)
    ts, fn = resolve_model(str(torchscript)), resolve_model(FIVE)
    assert isinstance(ts, ExternalSegmenter) and ts.num_classes == 5
    assert ts.identity.startswith("torchscript:") and ts.identity != fn.identity
    np.testing.assert_array_equal(segment(ts, frames[1])[0], segment(fn, frames[1])[0])
    # STAC's gradients flow through a TorchScript module too
    grads, _ = dct_gradients(ts, frames[1])
    assert np.abs(grads.y).sum() > 0 and grads.labels.max() < 5


def test_project_checkpoint_is_not_taken_for_torchscript(tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(build_model("drn_d_22", width=0.125), "drn_d_22", {"width": 0.125}, path)
    assert not is_torchscript(path)
    model = resolve_model(str(path))
    assert type(model).__name__ == "DRNSeg" and model.num_classes == 11


@pytest.mark.parametrize("spec, match", [
    ("nope", r"unknown model 'nope'.*TorchScript.*module:function.*"
             r"known models \(shipped checkpoints\): .*drn_d_22"),
    ("missing.pt", r"missing.pt: no such checkpoint or TorchScript file.*shipped checkpoints"),
    ("no_such_module_xyz:f", r"cannot import 'no_such_module_xyz'"),
    ("byo_model:nothing", r"has no function 'nothing'"),
    ("byo_model:not_a_module", r"returned str, not a torch.nn.Module"),
    ("byo_model:three_dim_output", r"must return float logits \(N, C, h, w\).*\(1, 64, 64\)"),
])
def test_bad_specs_are_clear_errors(spec, match):
    with pytest.raises(ModelError, match=match):
        resolve_model(spec)


def test_undifferentiable_model_is_refused_by_stac_gradients(frames):
    model = resolve_model("byo_model:detached")
    segment(model, frames[0])  # fine for plain offloading
    with pytest.raises(ValueError, match="differentiabl"):
        dct_gradients(model, frames[0])


def test_more_classes_than_camvid_in_ground_truth_and_gradients(frames, tmp_path):
    """Labels 11 and 12 of a 13-class model are classes, not CamVid's void (11)."""
    model = resolve_model("byo_model:thirteen_class")
    source = open_source("default", size=(64, 48))
    frame = next(iter(source))
    gt = GroundTruth(model, source, "byo_model:thirteen_class", cache=tmp_path)
    target = gt.labels(frame)
    assert (target == 11).any() and (target == 12).any()  # the test's premise
    zeros = np.zeros_like(target)
    pa, miou = gt.score(frame, zeros)
    assert pa == pytest.approx((target == 0).mean())  # every pixel counts, 11 and 12 included
    present = np.union1d(np.unique(target), [0])
    iou0 = (target == 0).sum() / target.size  # class 0: predicted everywhere
    assert miou == pytest.approx(iou0 / len(present))  # other present classes: IoU 0
    # Q_F over all 13 classes: the mean cross-entropy of every pixel against its argmax
    grads, _ = dct_gradients(model, frame.rgb)
    rgb = coeffs_to_rgb_torch(*(torch.tensor(c, dtype=torch.float32)
                                for c in rgb_to_coeffs(frame.rgb)), 48, 64).unsqueeze(0)
    with torch.no_grad():
        logits, _ = model.step(rgb, None)
    assert grads.loss == pytest.approx(float(F.cross_entropy(logits, logits.argmax(1))),
                                       rel=1e-5)


def test_external_model_has_no_shipped_tables():
    with pytest.raises(TableFileError, match=r"ExternalSegmenter.*tables build --model SPEC"):
        tables_for(resolve_model(FIVE))


def test_ground_truth_cache_tells_external_models_apart(tmp_path, torchscript):
    source = open_source("default", size=(64, 48))
    dirs = {GroundTruth(resolve_model(spec), source, spec, cache=tmp_path).dir
            for spec in (FIVE, str(torchscript))}
    assert len(dirs) == 2  # equal weights, different origins
    (callable_dir,) = [d for d in dirs if "byo_model_five_class" in str(d)]
    assert callable_dir.parent.name.startswith("byo_model_five_class-")
    again = GroundTruth(resolve_model(FIVE), source, FIVE, cache=tmp_path).dir
    assert again in dirs  # deterministic key


@pytest.mark.slow
def test_five_class_model_runs_h264_and_stac(tmp_path, repo_root, monkeypatch, capsys):
    """The acceptance: a module:function model with 5 classes runs `stac-sim run` with h264,
    and with stac on tables `stac-sim tables build` made for it."""
    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))
    tables = tmp_path / "five.npz"
    assert stac_sim(["tables", "build", "--model", FIVE, "--data", "default", "--frames", "2",
                     "--size", "64x48", "--levels", "8", "-o", str(tables)]) == 0
    low, high = json.loads(capsys.readouterr().out)["B_range"]
    meta = json.loads(tables.with_suffix(".json").read_text())
    assert meta["num_classes"] == 5 and meta["model_identity"].startswith(f"callable:{FIVE}:")
    common = ["run", "--trace", str(repo_root / "traces" / "lte.csv"), "--model", FIVE,
              "--duration", "2", "--fps", "5", "--size", "64x48", "--threads", "1"]
    B = repr(math.sqrt(low * high))
    runs = {"h264": ["--scheme", "h264", "--qp", "20"],
            "stac": ["--scheme", "stac", "--tables", str(tables), "--B", B]}
    for name, extra in runs.items():
        out = tmp_path / name
        assert stac_sim([*common, *extra, "--out", str(out)]) == 0, name
        frames = pd.read_csv(out / "frames.csv")
        summary = json.loads((out / "summary.json").read_text())
        assert summary["model"] == FIVE and len(frames) == 50
        scored = frames.dropna(subset=["miou"])
        assert len(scored) > 25 and scored["pa"].between(0, 1).all()
        keys = frames[(frames["keyframe"] == 1) & frames["pa"].notna()]
        assert keys["pa"].mean() > 0.7, name  # the edge's labels of a fine encoding agree
        labels = decode_labels((Path(summary["gt_cache"]["dir"])
                                / "000000.png").read_bytes())
        model = resolve_model(FIVE)
        first = next(iter(open_source("default", size=(64, 48))))
        np.testing.assert_array_equal(labels, segment(model, first.rgb)[0])  # GT: this model
        assert len(np.unique(labels)) > 2 and labels.max() < 5
