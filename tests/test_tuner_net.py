"""The tuner network of STAC §VI (edge.tuner_net): it learns the §VI labels, maps its
output onto the profiled grid, trains deterministically, and its weights round-trip with a
card whose validation loss re-checks. The shipped tiny weights (tests/data/tuner_tiny,
mechanics only) load and match their card."""

from pathlib import Path

import pytest
import torch
from test_profiles import _rows

from edge.profiles import ProfileRow, make_labels, read_profiles
from edge.tuner import make_tuner
from edge.tuner_net import NetTuner, flops, train, validation_loss
from stac.cli import main
from stac.protocol import Config, Content

TINY = Path(__file__).parent / "data" / "tuner_tiny"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here trains or runs the network: one torch thread."""


def _two_videos():
    """The hand-made profile as video 'v' and, slightly perturbed, as video 'w'."""
    rows = _rows()
    return rows + [ProfileRow(**{**r.__dict__, "video": "w", "pa": r.pa * 0.99}) for r in rows]


def test_network_learns_the_labels_and_rounds_to_the_grid():
    tuner, result = train(_two_videos(), val_video="w", epochs=1500)
    assert result.train_loss < 0.01 and result.examples_train == 36
    assert 15 < result.kflops < 25  # Table II: about 20 KFLOPs
    assert result.kflops == flops(6) / 1000
    # on training inputs it picks the known best: from (2, 5) under 150 kbps, (8, 10)
    config = Config.of({"B": 2.0, "fps": 5.0})
    new = tuner.step(0, 100.0, 150.0, config, Content(second=0, c=1.0, d=1.0))
    assert (new["B"], new["fps"], new.t_effective) == (8.0, 10.0, 1.0)
    # from (8, 10) under 500 kbps, (2, 10)
    new = tuner.step(0, 80.0, 500.0, Config.of({"B": 8.0, "fps": 10.0}),
                     Content(second=0, c=1.0, d=1.0))
    assert (new["B"], new["fps"]) == (2.0, 10.0)
    # every output lies on the profiled grid; no estimate or content: keep
    for w in (1.0, 30.0, 120.0, 400.0, 1e4):
        new = tuner.step(0, 100.0, w, config, Content(second=0, c=3.0, d=2.0))
        if new is not None:
            assert new["B"] in (2.0, 4.0, 8.0) and new["fps"] in (5.0, 10.0)
    assert tuner.step(0, 100.0, float("nan"), config, Content(0, 1.0, 1.0)) is None
    assert tuner.step(0, 100.0, 150.0, config, None) is None


def test_training_is_deterministic_and_ablations_drop_an_input():
    a, _ = train(_two_videos(), val_video="w", epochs=50, seed=3)
    b, _ = train(_two_videos(), val_video="w", epochs=50, seed=3)
    for pa, pb in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(pa, pb)
    no_c, _ = train(_two_videos(), val_video="w", variant="nn-no-c", epochs=50)
    assert no_c.name == "nn-no-c" and "c_prev" not in no_c.inputs
    assert no_c.net[0].in_features == 5
    with pytest.raises(ValueError, match="validation video"):
        train(_two_videos(), val_video="x", epochs=1)


def test_cli_trains_saves_and_the_card_rechecks(tmp_path):
    from edge.profiles import write_profiles

    profiles = write_profiles(_two_videos(), tmp_path / "p.csv")
    out = tmp_path / "t.pt"
    assert main(["tuner", "train", str(profiles), "--out", str(out), "--val-video", "w",
                 "--epochs", "200"]) == 0
    tuner = make_tuner(f"nn:{out}")
    assert isinstance(tuner, NetTuner) and out.stat().st_size < 1_000_000
    val = [r for r in _two_videos() if r.video == "w"]
    assert validation_loss(tuner, val) == pytest.approx(tuner.card["val_loss"], rel=1e-5)
    assert out.with_suffix(".json").exists() and "tuner train" in tuner.card["command"]
    with pytest.raises(ValueError, match="holds the weights of 'nn'"):
        make_tuner(f"nn-no-d:{out}")
    assert main(["tuner", "train", str(tmp_path / "none.csv"), "--out", str(out)]) == 2


def test_shipped_tiny_weights_load_and_match_their_card():
    tuner = NetTuner.load(TINY / "nn.pt")
    rows = read_profiles(TINY / "profiles.csv")
    val = [r for r in rows if r.video == tuner.card["video_val"]]
    assert len(make_labels(val)) == tuner.card["examples_val"]
    assert validation_loss(tuner, val) == pytest.approx(tuner.card["val_loss"], rel=1e-4)
