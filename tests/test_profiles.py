"""Profiles and labels of STAC §VI (edge.profiles) on a hand-made profile whose best
configurations are known, and STAC-offline's lookup."""

import math

import pytest

from edge.profiles import (
    OfflineTuner,
    ProfileError,
    ProfileRow,
    best_under,
    drop_dominated,
    make_labels,
    read_profiles,
    write_profiles,
)
from edge.tuner import make_tuner
from stac.protocol import Config, Content

# second 0 (content c=1, d=1) and second 1 (c=5, d=3) of one video, a 2 x 2 grid + a
# dominated row; (B, fps) -> (pa, kbps)
S0 = {(2.0, 5.0): (0.80, 100.0), (8.0, 5.0): (0.70, 40.0), (2.0, 10.0): (0.85, 200.0),
      (8.0, 10.0): (0.75, 80.0)}
S1 = {(2.0, 5.0): (0.63, 300.0), (8.0, 5.0): (0.50, 90.0), (2.0, 10.0): (0.65, 500.0),
      (8.0, 10.0): (0.62, 150.0), (4.0, 10.0): (0.61, 200.0)}  # (4, 10) is dominated by (8, 10)


def _rows():
    rows = []
    for second, table, (c, d) in ((0, S0, (1.0, 1.0)), (1, S1, (5.0, 3.0))):
        for (b, fps), (pa, kbps) in table.items():
            rows.append(ProfileRow(video="v", second=second, B=b, fps=fps, pa=pa, miou=pa / 2,
                                   bitrate_kbps=kbps, c=c, d=d, model="m", seed=0))
    return rows


def test_dominated_rows_are_dropped():
    kept = drop_dominated(_rows())
    assert len(kept) == len(_rows()) - 1
    assert not any(r.second == 1 and r.B == 4.0 for r in kept)


def test_best_under_a_bandwidth():
    s1 = [r for r in _rows() if r.second == 1]
    assert (best_under(s1, 160.0).B, best_under(s1, 160.0).fps) == (8.0, 10.0)
    assert (best_under(s1, 350.0).B, best_under(s1, 350.0).fps) == (2.0, 5.0)  # .63 > .62
    assert (best_under(s1, 500.0).B, best_under(s1, 500.0).fps) == (2.0, 10.0)
    assert (best_under(s1, 10.0).B, best_under(s1, 10.0).fps) == (8.0, 5.0)  # none fits


def test_labels_are_the_known_best_as_scaling_factors():
    examples = make_labels(_rows())
    # 4 rows at t-1, bandwidths: half the cheapest + 2 per non-dominated row of second 1
    assert len(examples) == 4 * (1 + 2 * 4)
    by_key = {(e.B_prev, e.fps_prev, e.bandwidth): e for e in examples}
    # from (B=2, fps=5) under 150 kbps the best at t is (8, 10): alpha 4, beta 2
    e = by_key[(2.0, 5.0, 150.0)]
    assert (e.alpha, e.beta) == (4.0, 2.0)
    assert (e.bitrate_prev, e.c_prev, e.d_prev) == (100.0, 1.0, 1.0)
    # from (8, 10) under 500 kbps: (2, 10), alpha 1/4, beta 1
    e = by_key[(8.0, 10.0, 500.0)]
    assert (e.alpha, e.beta) == (0.25, 1.0)
    # every non-dominated configuration of second 1 is some label's best
    best = {(e.B_prev * e.alpha, e.fps_prev * e.beta) for e in examples}
    assert best == {(2.0, 5.0), (8.0, 5.0), (2.0, 10.0), (8.0, 10.0)}


def test_offline_tuner_picks_the_known_row():
    tuner = OfflineTuner(_rows())
    config = Config.of({"B": 2.0, "fps": 5.0})
    # content nearest second 1's; 160 kbps fits (8, 10) best
    new = tuner.step(3, 120.0, 160.0, config, Content(second=3, c=4.5, d=2.9))
    assert new is not None and (new["B"], new["fps"], new.t_effective) == (8.0, 10.0, 4.0)
    # content nearest second 0's: 120 kbps fits (2, 5) (pa .80) best
    assert tuner.step(3, 0.0, 120.0, config, Content(second=3, c=1.2, d=0.8)) is None
    new = tuner.step(3, 0.0, 250.0, config, Content(second=3, c=1.2, d=0.8))
    assert (new["B"], new["fps"]) == (2.0, 10.0)
    assert tuner.step(3, 0.0, math.nan, config, Content(second=3, c=1.2, d=0.8)) is None
    # without content (h264 measures none): each configuration's mean over the seconds;
    # (8, 10) averages pa .685 at 115 kbps, (2, 5) .715 at 200, (2, 10) .75 at 350
    assert (tuner.step(3, 0.0, 150.0, config, None)["B"],
            tuner.step(3, 0.0, 150.0, config, None)["fps"]) == (8.0, 10.0)
    assert tuner.step(3, 0.0, 250.0, config, None) is None  # (2, 5): unchanged
    assert tuner.step(3, 0.0, 400.0, config, None)["fps"] == 10.0


def test_profile_file_round_trip_and_errors(tmp_path):
    path = write_profiles(_rows(), tmp_path / "p.csv")
    assert read_profiles(path) == _rows()
    assert isinstance(make_tuner(f"offline:{path}"), OfflineTuner)
    (tmp_path / "bad.csv").write_text("video,second\nv,0\n")
    with pytest.raises(ProfileError, match="bad.csv: missing columns"):
        read_profiles(tmp_path / "bad.csv")
    with pytest.raises(ProfileError, match="cannot read"):
        read_profiles(tmp_path / "none.csv")


def test_offline_tuner_drives_a_baseline_knob():
    """For `uniform`/`grace`/`h264` the profile's B column holds the scheme's own knob."""
    tuner = OfflineTuner(_rows())
    new = tuner.step(3, 0.0, 160.0, Config.of({"level": 2.0, "fps": 5.0}),
                     Content(second=3, c=5.0, d=3.0))
    assert (new["level"], new["fps"]) == (8.0, 10.0)
    with pytest.raises(ProfileError, match="quality knob"):
        tuner.step(3, 0.0, 160.0, Config.of({"qp": 2.0, "level": 1.0, "fps": 5.0}),
                   Content(second=3, c=5.0, d=3.0))
