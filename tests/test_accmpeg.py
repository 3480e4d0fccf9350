"""Scheme `accmpeg` (AccMPEG, STAC §VIII-A): the AccModel's mask, two QPs per macroblock
exactly where the mask says (decoded from the real bitstream), one AccModel run per segment,
and the shipped weights against their card."""

import json

import numpy as np
import pytest
import torch

from device.accmodel import (
    WEIGHTS,
    AccModel,
    AccModelError,
    gradient_tiles,
    mask_iou,
    normalise,
    open_close,
    quality_mask,
    tile_sums,
    weights_for,
)
from device.accmpeg_agent import quality_levels
from stac.codec.decoder import Decoder
from stac.codec.labels import decode_labels
from stac.codec.quant import default_tables
from stac.frames import open_source
from stac.schemes import SchemeError, Stream, make_scheme


@pytest.fixture(scope="module")
def accmodel():
    return AccModel.load()


@pytest.fixture(scope="module")
def untrained():
    """An edge model of the default architecture (its shipped AccModel is `WEIGHTS`)."""
    from edge.models.registry import resolve_model

    return resolve_model("untrained:dabnet")


def test_tile_sums_and_normalise_follow_the_macroblock_grid():
    values = np.arange(20 * 36, dtype=np.float64).reshape(20, 36)
    tiles = tile_sums(values)
    assert tiles.shape == (2, 3)  # ceil(20/16) x ceil(36/16), as the codec's grid
    assert tiles[0, 0] == values[:16, :16].sum() and tiles[1, 2] == values[16:, 32:].sum()
    n = normalise(tiles)
    assert n.min() == 0 and n.max() == 1 and np.argmax(n) == np.argmax(tiles)
    assert not normalise(np.ones((2, 2))).any()


def test_open_close_drops_specks_and_fills_holes():
    mask = np.zeros((12, 14), bool)
    mask[2:9, 2:9] = True
    mask[5, 5] = False  # a one-tile hole inside a region: filled by the closing
    mask[11, 13] = True  # an isolated tile: dropped by the opening
    out = open_close(mask)
    assert out[2:9, 2:9].all() and not out[11, 13]
    assert out.sum() == 49
    assert quality_mask(np.where(out, 0.9, 0.1)).tolist() == out.tolist()


def test_quality_levels_are_the_qp_pair():
    mask = np.array([[True, False], [False, True]])
    assert quality_levels(mask, 30, 10).tolist() == [[30, 40], [40, 30]]
    with pytest.raises(ValueError, match="QP pair"):
        quality_levels(mask, 45, 10)


def test_scheme_refuses_a_pair_off_the_ladder_and_bad_weights(tmp_path):
    with pytest.raises(SchemeError, match="qp \\+ gap"):
        make_scheme("accmpeg", {"qp": 45, "gap": 10})
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"not weights")
    with pytest.raises(SchemeError, match="cannot read AccModel weights"):
        make_scheme("accmpeg", {"weights": str(bad)}).build(
            Stream(source_fps=25, frame_size=(64, 48)), None)
    with pytest.raises(AccModelError, match="RGB uint8"):
        AccModel.load().scores(np.zeros((16, 16), np.uint8))


def test_scheme_uses_the_accmodel_of_the_run_edge_model(untrained):
    """Each edge model gets the AccModel trained on its own gradients; a model without one
    gets the default model's, with a warning naming the model."""
    from edge.models.registry import resolve_model
    from stac.notices import InputWarning
    from stac.schemes.accmpeg import accmodel_for

    assert WEIGHTS == weights_for("dabnet") and WEIGHTS.is_file()
    assert accmodel_for(untrained) == WEIGHTS
    bisenet = accmodel_for(resolve_model("untrained:bisenet"))
    assert bisenet == weights_for("bisenet") and bisenet.is_file()
    assert json.loads(bisenet.with_suffix(".json").read_text())["edge_model"] == "bisenet"
    with pytest.warns(InputWarning, match="drn_d_22"):
        assert accmodel_for(resolve_model("untrained:drn_d_22")) == WEIGHTS
    built = make_scheme("accmpeg", {}).build(Stream(source_fps=25, frame_size=(64, 48)),
                                             resolve_model("untrained:bisenet"))
    reference = AccModel.load(bisenet).state_dict()
    for name, value in built.device.accmodel.state_dict().items():
        assert torch.equal(value, reference[name]), name


def test_two_levels_per_macroblock_exactly_where_the_mask_says(accmodel, untrained,
                                                               one_thread):
    """Decoding each keyframe's real bytes gives QP `qp` on the mask's macroblocks and
    qp + gap elsewhere; the AccModel runs on the first keyframe of each segment only, and
    its mask holds for the segment."""
    size = (160, 96)  # small frames score low: threshold 0.15 gives both qualities here
    scheme = make_scheme("accmpeg", {"qp": 24, "gap": 12, "segment": 3, "fps": 25,
                                     "threshold": 0.15})
    built = scheme.build(Stream(source_fps=25.0, frame_size=size), untrained)
    decoder = Decoder(default_tables())
    runs, levels_seen, shown = [], set(), None
    for f in open_source("default", size=size, max_frames=7):
        out = built.device.on_frame(f.index, f.t, f.rgb)
        assert out.keyframe is not None
        assert out.result_index == (None if f.index == 0 else f.index - 1)  # newest, as is
        if shown is not None:
            assert out.segmentation.tolist() == shown.tolist() and not out.propagated
        feedback = built.edge.on_keyframe(out.keyframe).feedback
        built.device.on_feedback(feedback)
        shown = decode_labels(feedback.segmentation)
        if any(w.kind == "accmodel" for w in out.work):
            runs.append(f.index)
            expected = quality_mask(accmodel.scores(f.rgb), 0.15)
            assert built.device.mask.tolist() == expected.tolist()
        decoder.decode(out.keyframe.payload)
        decoded = decoder.last_level_map
        assert decoded.shape == (6, 10)  # one level per 16x16 macroblock of 160x96
        assert decoded.tolist() == np.where(built.device.mask, 24, 36).tolist()
        levels_seen |= set(np.unique(decoded).tolist())
    assert runs == [0, 3, 6]
    assert not decoder.last_intra  # keyframes after the first are inter coded
    assert levels_seen == {24, 36}, "a real frame should get both qualities"


def test_a_new_configuration_starts_a_new_segment(untrained):
    from stac.protocol import Config

    scheme = make_scheme("accmpeg", {"segment": 10, "fps": 25})
    built = scheme.build(Stream(source_fps=25.0, frame_size=(64, 48)), untrained)
    frames = list(open_source("default", size=(64, 48), max_frames=4))
    kinds = [[w.kind for w in built.device.on_frame(f.index, f.t, f.rgb).work]
             for f in frames[:2]]
    built.device.on_config(Config.of({"qp": 34, "fps": 25}))
    kinds += [[w.kind for w in built.device.on_frame(f.index, f.t, f.rgb).work]
              for f in frames[2:]]
    assert [("accmodel" in k) for k in kinds] == [True, False, True, False]
    assert built.device.levels().max() == 44


SHIPPED = sorted(WEIGHTS.parent.glob("accmodel-*.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_mask_agrees_with_gradient_tiles_on_a_training_frame(path, dataset, one_thread):
    """Each shipped AccModel learned its first CamVid training frame: its high-quality mask
    overlaps the thresholded gradient tiles of its edge model better than marking every
    macroblock high quality would (whose IoU is the label's share of macroblocks)."""
    from edge.models.registry import load_model
    from edge.training.accmodel import camvid_samples

    accmodel = AccModel.load(path)
    sample = camvid_samples(dataset("camvid"), "train", limit=1)[0]
    edge_model = load_model(accmodel.config.extra["edge_model"]).eval()
    truth = gradient_tiles(edge_model, sample.rgb) > 0.2
    iou = mask_iou(quality_mask(accmodel.scores(sample.rgb)), truth)
    assert iou > 0.3 and iou > truth.mean() + 0.05


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_weights_match_their_card(path, dataset, one_thread):
    """Each shipped AccModel loads, is small, names the edge model it learned from in its
    file name and card, and re-measures the card's IoU on the first ten CamVid val images."""
    from edge.models.registry import load_model
    from edge.training.accmodel import camvid_samples, mask_agreement

    card = json.loads(path.with_suffix(".json").read_text())
    assert path.stat().st_size < 10e6
    assert path == weights_for(card["edge_model"])
    assert card["epochs"] >= 1 and card["data"]["camvid_train"] == 367
    accmodel = AccModel.load(path)
    assert accmodel.config.extra == card
    model = load_model(card["edge_model"]).eval()
    val = camvid_samples(dataset("camvid"), "val", limit=10)
    for s in val:
        s.label = gradient_tiles(model, s.rgb)
    agreement = mask_agreement(accmodel, val)
    assert agreement.frames == card["val_first10"]["frames"] == 10
    for key in ("iou_mask", "iou_threshold", "label_share"):
        assert agreement.__dict__[key] == pytest.approx(card["val_first10"][key], abs=0.01)


@pytest.mark.slow
def test_train_command_resumes_and_writes_a_card(tmp_path, dataset, one_thread, capsys):
    """`stac-sim accmpeg train` labels, trains and writes weights + card; run again with more
    epochs it resumes from its checkpoint (labels from the cache, loss curve extended), and
    the result equals one uninterrupted run with the same seed."""
    from stac.cli import main

    def train(out, epochs):
        return main(["accmpeg", "train", "--data", str(dataset("camvid")), "--clips", "",
                     "--limit", "2", "--epochs", str(epochs), "--out", str(out)])

    assert train(tmp_path / "a.pt", 1) == 0
    assert train(tmp_path / "a.pt", 2) == 0
    assert "resumed after epoch 1" in capsys.readouterr().err
    assert train(tmp_path / "b.pt", 2) == 0
    card = json.loads((tmp_path / "a.json").read_text())
    assert len(card["train_loss"]) == 2 and card["data"]["camvid_train"] == 2
    assert card["train_loss"] == json.loads((tmp_path / "b.json").read_text())["train_loss"]
    a, b = AccModel.load(tmp_path / "a.pt"), AccModel.load(tmp_path / "b.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert main(["accmpeg", "train", "--data", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "c.pt")]) == 2
    assert "nowhere" in capsys.readouterr().err


PROFILES = sorted((WEIGHTS.parent.parent.parent / "edge" / "tuners").glob("*-accmpeg.csv"))
PROFILE = PROFILES[0]  # bisenet's (the adaptive run below is the tuner's mechanics)


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_shipped_profile_drives_the_quality_pair_and_fps(path):
    """AccMPEG's adaptation (§VIII-C): the offline tuner over the shipped profile answers
    with (qp, fps) of the profiled grid, the most accurate that fits the bandwidth, and a
    cheaper configuration when the bandwidth falls."""
    from edge.profiles import read_profiles
    from edge.tuner import make_tuner
    from stac.protocol import Config, Content

    rows = read_profiles(path)
    assert {r.B for r in rows} == {18.0, 26.0, 34.0, 40.0}
    assert {r.fps for r in rows} == {2.5, 5.0, 10.0}
    tuner = make_tuner(f"offline:{path}")
    second = [r for r in rows if r.video == "bikes" and r.second == 1]
    content = Content(second=1, c=second[0].c, d=second[0].d)
    start = Config.of({"qp": 30.0, "fps": 10.0})
    wide = tuner.step(1, 100.0, 1e5, start, content)
    narrow = tuner.step(1, 100.0, 50.0, start, content)
    best = max(second, key=lambda r: r.pa)
    assert (wide["qp"], wide.fps) == (best.B, best.fps)
    fits = [r for r in second if r.bitrate_kbps <= 50.0]
    pick = max(fits, key=lambda r: r.pa)
    assert (narrow["qp"], narrow.fps) == (pick.B, pick.fps)
    assert pick.bitrate_kbps < best.bitrate_kbps


@pytest.mark.parametrize("model", ["bisenet", "dabnet"])
def test_auto_tuner_is_the_lookup_profile_of_the_run_model(model):
    """`--tuner auto` gives accmpeg its §VIII-C adaptation: the lookup profile shipped for
    the run's edge model (edge/tuners/MODEL-accmpeg.csv)."""
    from edge.models.registry import resolve_model
    from edge.tuner import TUNER_DIR

    built = make_scheme("accmpeg", {}).build(
        Stream(source_fps=25, frame_size=(64, 48), tuner="auto"),
        resolve_model(f"untrained:{model}"))
    assert built.edge.tuner.spec == f"offline:{TUNER_DIR / f'{model}-accmpeg.csv'}"


@pytest.mark.slow
def test_adaptive_run_follows_the_bandwidth(tmp_path, monkeypatch, one_thread):
    """`accmpeg` with the offline tuner on a trace that drops tenfold and recovers: coarser
    quality or fewer keyframes while the bandwidth is low, and each frame carries the
    configuration in force."""
    import pandas as pd

    from stac.sim.runner import run, run_options
    from stac.traces import Trace, save_trace

    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))
    trace = save_trace(Trace(np.array([0.0, 2.0, 4.0]), np.array([2000.0, 20.0, 2000.0]),
                             end_s=7.0), tmp_path / "trace.csv", "drops and recovers")
    run(run_options(dict(trace=str(trace), out=str(tmp_path / "out"), size=(240, 102),
                         duration=6.0, scheme="accmpeg", tuner=f"offline:{PROFILE}")))
    seconds = pd.read_csv(tmp_path / "out" / "seconds.csv")
    frames = pd.read_csv(tmp_path / "out" / "frames.csv")
    config = list(zip(seconds["qp"], seconds["fps"], strict=True))
    assert {config[2], config[3]}.isdisjoint({config[1], config[5]})
    assert seconds["bitrate_kbps"][2:4].max() < seconds["bitrate_kbps"][[1, 5]].min()
    per_second = frames.groupby(np.floor(frames["t_capture"] + 1e-9).astype(int))
    assert (per_second["qp"].first().to_numpy() == seconds["qp"].to_numpy()).all()
