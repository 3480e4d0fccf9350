"""Result age and link use (issue 12 "honest outputs"): per frame the age of the result
shown in seconds, per second overshoot and utilisation, and their place in the summary."""

import math

import pandas as pd
import pytest

from stac.results import link_use, result_age_s


def test_result_age_in_seconds_follows_the_shown_keyframe():
    frames = pd.DataFrame({"frame": [0, 1, 2, 3, 4], "t_capture": [0.0, 0.1, 0.3, 0.4, 0.7],
                           "result_age_frames": [math.nan, 1.0, 2.0, 0.0, 3.0]})
    age = result_age_s(frames)
    assert math.isnan(age[0])
    assert list(age[1:]) == pytest.approx([0.1, 0.3, 0.0, 0.6])  # frame 4 shows frame 1's


def test_overshoot_and_utilisation_per_second():
    seconds = pd.DataFrame({"bitrate_kbps": [50.0, 120.0, 10.0],
                            "bandwidth_kbps": [100.0, 100.0, 0.0]})
    use = link_use(seconds)
    assert list(use["overshoot_kbps"]) == [0.0, 20.0, 10.0]
    assert list(use["utilisation"][:2]) == [0.5, 1.2] and math.isnan(use["utilisation"][2])
