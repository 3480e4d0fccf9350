"""`nn-safe` (edge.tuner_safe, beyond the paper): the §VI network's choice is kept when its
predicted bitrate fits the budget, replaced by the nearest fitting configuration when not,
and the budget shrinks by the stream's own recent under-predictions (RobustMPC's discount)."""

import numpy as np
import pytest
import torch
from test_tuner_net import TINY, _two_videos

from edge.profiles import pooled
from edge.tuner import TUNER_DIR, make_tuner, resolve_spec
from edge.tuner_net import NetTuner, train
from edge.tuner_safe import SafeNetTuner
from stac.protocol import Config, Content


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """The network runs: one torch thread."""


@pytest.fixture(scope="module")
def net():
    """A network trained on the hand-made profile (costs: pooled means over both videos),
    on one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(_two_videos(), val_video="w", epochs=200)[0]
    finally:
        torch.set_num_threads(threads)


def test_training_keeps_each_configurations_mean_bitrate(net, tmp_path):
    expected = {(r.B, r.fps): r.bitrate_kbps for r in pooled(_two_videos())}
    assert {(b, f): kbps for b, f, kbps in net.costs} == expected
    assert expected[(2.0, 5.0)] == 200.0 and expected[(4.0, 10.0)] == 200.0
    loaded = NetTuner.load(net.save(tmp_path / "t.pt"))
    assert loaded.costs == net.costs


def test_predictions_scale_the_last_seconds_bitrate_by_the_profiled_costs(net):
    safe = SafeNetTuner(net)
    # 100 kbps under (8, 5), whose profiled mean is 65 kbps: (2, 10) costs 350 -> 538.5
    predicted = safe.predict(100.0, (8.0, 5.0))
    assert predicted[(8.0, 5.0)] == pytest.approx(100.0)
    assert predicted[(2.0, 10.0)] == pytest.approx(100.0 * 350.0 / 65.0)
    # a configuration off the profiled grid is read as its nearest profiled one
    assert safe.predict(100.0, (7.0, 6.0)) == predicted


def test_the_proposal_is_kept_when_it_fits_else_the_nearest_that_fits(net):
    safe = SafeNetTuner(net)
    predicted = safe.predict(100.0, (8.0, 5.0))  # (8,5) 100, (8,10) 176.9, (2,5) 307.7 ...
    assert safe.choose((2.0, 10.0), predicted, 600.0) == (2.0, 10.0)  # 538.5 fits
    # 200 kbps: (8, 5) and (8, 10) fit; (8, 10) is 2 B-steps from (2, 10), (8, 5) three
    assert safe.choose((2.0, 10.0), predicted, 200.0) == (8.0, 10.0)
    # from (4, 10) under 300: (8, 10) is one B-step away, (2, 5) two
    assert safe.choose((4.0, 10.0), predicted, 300.0) == (8.0, 10.0)
    assert safe.choose((2.0, 10.0), predicted, 50.0) == (8.0, 5.0)  # none fits: cheapest


def test_the_budget_shrinks_by_recent_under_predictions_and_recovers(net):
    safe = SafeNetTuner(net, k=2)
    content = Content(second=0, c=1.0, d=1.0)
    config = Config.of({"B": 8.0, "fps": 5.0})
    new = safe.step(0, 100.0, 1000.0, config, content) or config
    made = safe._predicted
    assert made[0] == 1 and made[1] == pytest.approx(
        safe.predict(100.0, (8.0, 5.0))[safe.nearest(new["B"], new.fps)])
    # second 1 sent twice what was predicted: the budget halves
    assert safe.budget(1, 2.0 * made[1], 1000.0) == pytest.approx(500.0)
    # an over-prediction is no error; after k = 2 seconds the doubling is forgotten
    safe._predicted = (2, 100.0)
    assert safe.budget(2, 50.0, 1000.0) == pytest.approx(500.0)
    safe._predicted = (3, 100.0)
    assert safe.budget(3, 100.0, 1000.0) == pytest.approx(1000.0)


def test_every_choice_fits_the_estimate_or_is_the_cheapest():
    """The shipped default weights, random inputs: whatever the network proposes, the
    choice's predicted bitrate fits the (undiscounted, first-step) budget, or nothing fits
    and it is the cheapest configuration."""
    rng = np.random.default_rng(0)
    net = make_tuner("nn", model="dabnet")
    for _ in range(100):
        safe = SafeNetTuner(net)
        b, fps = safe.keys[rng.integers(len(safe.keys))]
        config = Config.of({"B": b, "fps": fps})
        bitrate, estimate = 10 ** rng.uniform(1, 3.5), 10 ** rng.uniform(1, 3.5)
        content = Content(second=3, c=10 ** rng.uniform(4.5, 5.5), d=10 ** rng.uniform(5, 6.5))
        new = safe.step(3, bitrate, estimate, config, content) or config
        predicted = safe.predict(bitrate, (b, fps))
        chosen = predicted[safe.nearest(new["B"], new.fps)]
        assert chosen <= estimate or chosen == min(predicted.values())


def test_specs_name_the_shipped_network_and_refuse_weights_without_costs():
    assert resolve_spec("nn-safe", model="dabnet") == f"nn-safe:{TUNER_DIR / 'dabnet.pt'}"
    tuner = make_tuner("auto", scheme="stac", model="dabnet")
    assert tuner.name == "nn"  # the paper's network stays the default
    assert isinstance(make_tuner("nn-safe", model="dabnet"), SafeNetTuner)
    with pytest.raises(ValueError, match="no per-configuration costs.*retrain"):
        make_tuner(f"nn-safe:{TINY / 'nn.pt'}")  # saved before costs were kept
    with pytest.raises(ValueError, match="full network 'nn', not 'nn-no-c'"):
        make_tuner(f"nn-safe:{TUNER_DIR / 'dabnet-nn-no-c.pt'}")


@pytest.mark.slow
def test_a_run_with_nn_safe_steps_down_when_the_bandwidth_drops(tmp_path, monkeypatch):
    """`stac-sim run --tuner nn-safe` over a trace that drops eightfold: the seconds under
    the drop run a configuration the profiles say is cheaper than the one before it."""
    import pandas as pd

    from stac.sim.runner import run, run_options
    from stac.traces import Trace, save_trace

    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))
    trace = save_trace(Trace(np.array([0.0, 3.0, 5.0]), np.array([400.0, 50.0, 400.0]),
                             end_s=8.0), tmp_path / "t.csv", "drop")
    summary = run(run_options(dict(trace=str(trace), out=str(tmp_path / "out"),
                                   size=(240, 102), duration=6.0, source_fps=10.0,
                                   scheme="stac", model="dabnet", tuner="nn-safe",
                                   estimator="oracle")))
    assert summary["tuner"] == f"nn-safe:{TUNER_DIR / 'dabnet.pt'}"
    seconds = pd.read_csv(tmp_path / "out" / "seconds.csv")
    safe = make_tuner("nn-safe", model="dabnet")
    cost = [safe.cost[safe.nearest(b, f)] for b, f in zip(seconds["B"], seconds["fps"],
                                                          strict=True)]
    assert max(cost[3:5]) < cost[2]  # the oracle tells the step at 2 of the drop at 3


def test_the_level_is_the_configurations_recent_mean_without_its_restart(net):
    safe = SafeNetTuner(net, k=2)
    content = Content(second=0, c=1.0, d=1.0)
    a, b = Config.of({"B": 8.0, "fps": 5.0}), Config.of({"B": 2.0, "fps": 10.0})
    safe.step(0, 90.0, 1e6, a, content)
    assert safe.level() == 90.0  # one second: itself
    for second, kbps in enumerate((30.0, 50.0, 70.0), start=1):
        safe.step(second, kbps, 1e6, a, content)
    assert safe.level() == 60.0  # the last k = 2 seconds of a
    safe.step(4, 400.0, 1e6, b, content)  # b's first second: the intra restart
    assert safe.level() == 400.0
    safe.step(5, 200.0, 1e6, b, content)
    assert safe.level() == 200.0  # b's restart left out
