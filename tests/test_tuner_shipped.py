"""The shipped tuners (edge/tuners/): the default model's weights exist, every weights file
loads, is under 1 MB, and its card's validation loss is re-computed from the committed
profiles; every lookup profile is what its name says; `auto` picks them."""

import json
from pathlib import Path

import pytest

from edge.profiles import OfflineTuner, pooled, read_profiles
from edge.tuner import TUNER_DIR, make_tuner
from edge.tuner_net import NetTuner, validation_loss

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = sorted(TUNER_DIR.glob("*.pt"))
LOOKUPS = sorted(TUNER_DIR.glob("*-*.csv"))
#: the models whose tuners the campaigns of docs/simulation.md shipped (another model's are
#: made by rerunning experiments/profile_campaign.py and profile_ship.py with --model);
#: the default model must be one of them
SHIPPED_MODELS = ("bisenet", "dabnet")


def test_the_default_model_has_shipped_tuners():
    from stac.schemes import DEFAULT_MODEL

    assert DEFAULT_MODEL in SHIPPED_MODELS


@pytest.mark.parametrize("SHIPPED", SHIPPED_MODELS)
def test_the_campaigns_tuners_are_shipped(SHIPPED):
    assert (TUNER_DIR / f"{SHIPPED}.pt").is_file()
    tuner = make_tuner("auto", scheme="stac", model=SHIPPED)
    assert isinstance(tuner, NetTuner) and tuner.name == "nn"
    assert tuner.spec == f"nn:{TUNER_DIR / f'{SHIPPED}.pt'}"
    for variant in ("nn-no-c", "nn-no-d", "casva-content", "nn-safe"):
        assert make_tuner(variant, scheme="stac", model=SHIPPED).name == variant
    assert isinstance(make_tuner("auto", scheme="h264", model=SHIPPED), OfflineTuner)
    assert isinstance(make_tuner("offline", scheme="stac", model=SHIPPED), OfflineTuner)


@pytest.mark.slow
@pytest.mark.parametrize("SHIPPED", SHIPPED_MODELS)
def test_a_default_stac_run_adapts_b_and_fps_to_the_bandwidth(tmp_path, monkeypatch,
                                                              one_thread, SHIPPED):
    """`--scheme stac` with no tuner named: the shipped network, on bikes at the profiled
    size, picks a cheaper configuration for the second whose bandwidth drops 25-fold than
    for the next, when it comes back."""
    import numpy as np
    import pandas as pd

    from stac.sim.runner import run, run_options
    from stac.traces import Trace, save_trace

    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))
    trace = save_trace(Trace(np.array([0.0, 2.0, 3.0]), np.array([1500.0, 60.0, 1500.0]),
                             end_s=10.0), tmp_path / "t.csv", "drop")
    summary = run(run_options(dict(trace=str(trace), out=str(tmp_path / "out"),
                                   size=(480, 204), duration=4.0, source_fps=10.0,
                                   scheme="stac", model=SHIPPED)))
    assert summary["tuner"] == f"nn:{TUNER_DIR / f'{SHIPPED}.pt'}"
    seconds = pd.read_csv(tmp_path / "out" / "seconds.csv")
    (b2, f2), (b3, f3) = [(seconds["B"][s], seconds["fps"][s]) for s in (2, 3)]
    assert (b2, f2) != (b3, f3)
    assert b2 >= b3 and f2 <= f3  # coarser B or fewer keyframes under 60 kbps
    # (not the bits of second 2: its first keyframe restarts the stream intra, §VII)


@pytest.mark.parametrize("path", WEIGHTS, ids=[p.name for p in WEIGHTS])
def test_shipped_weights_load_and_their_validation_loss_holds(path, one_thread):
    assert path.stat().st_size < 1_000_000
    tuner = NetTuner.load(path)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card == tuner.card and path.with_suffix(".md").is_file()
    model = path.stem.split("-")[0]
    assert card["models"] == [model]
    expected = {"": "nn", "-nn-no-c": "nn-no-c", "-nn-no-d": "nn-no-d"}[path.stem[len(model):]]
    assert tuner.name == card["variant"] == expected
    rows = read_profiles(REPO / card["profiles"])
    val = [r for r in rows if r.video == card["video_val"]]
    assert val and card["video_val"] not in card["videos_train"]
    assert validation_loss(tuner, val) == pytest.approx(card["val_loss"], rel=1e-4)
    assert f"{card['val_loss']:.4f}" in path.with_suffix(".md").read_text()
    # nn-safe's cost model: each configuration's mean bitrate over the same profiles
    assert tuner.costs == [(r.B, r.fps, r.bitrate_kbps) for r in pooled(rows)]


@pytest.mark.parametrize("path", LOOKUPS, ids=[p.name for p in LOOKUPS])
def test_shipped_lookup_profiles_are_what_their_name_says(path):
    model, scheme = path.stem.split("-", 1)
    rows = read_profiles(path)
    assert {r.model for r in rows} == {model} and {r.scheme for r in rows} == {scheme}
    assert {r.video for r in rows} == {"bikes", "solidWhiteRight"}
    committed = REPO / "experiments" / "figures" / "profiles" / f"{scheme}_{model}.csv"
    assert committed.read_text() == path.read_text()


def test_auto_gives_each_baseline_its_own_adaptation():
    """Issue 17: `auto` is CASVA's learned policy for `casva` (whatever the model) and the
    §VIII-C lookup for `accmpeg` where its profile is shipped."""
    from edge.casva_policy import CasvaTuner

    assert isinstance(make_tuner("auto", scheme="casva", model="dabnet"), CasvaTuner)
    assert isinstance(make_tuner("auto", scheme="accmpeg", model="bisenet"), OfflineTuner)
    assert make_tuner("auto", scheme="jpeg", model="dabnet").name == "fixed"
