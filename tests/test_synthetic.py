"""Synthetic camera-motion clips from CamVid stills (stac.synthetic, issue 16's dev set)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stac.experiment.spec import load_spec, resolve
from stac.frames import open_source
from stac.synthetic import DEV_SET, SyntheticError, open_synthetic, parse_spec

PAN = "synthetic:camvid-val/0016E5_07965?motion=pan&seconds=2"


def _shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(dx, dy) that moves the content of grey frame a onto b (phase correlation)."""
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64) for x in (a, b))
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb)
    return dx, dy


def test_parse_spec_defaults_and_errors():
    spec = parse_spec("synthetic:camvid-val/0016E5_07965.png?motion=zoom&fps=10")
    assert (spec.split, spec.still, spec.motion, spec.seconds, spec.fps, spec.seed) == (
        "val", "0016E5_07965", "zoom", 6.0, 10.0, 0)
    assert spec.frames == 60
    assert parse_spec(PAN).name != parse_spec(PAN + "&seed=1").name  # caches key on the name
    for bad, word in [("synthetic:camvid-val/x", "motion"),
                      ("synthetic:camvid-val/x?motion=spin", "spin"),
                      ("synthetic:kitti/x?motion=pan", "camvid-SPLIT"),
                      ("synthetic:camvid-val/x?motion=pan&speed=3", "speed"),
                      ("synthetic:camvid-val/x?motion=pan&fps=fast", "fps='fast'"),
                      ("synthetic:camvid-val/x?motion=pan&seconds=0", "seconds")]:
        with pytest.raises(SyntheticError, match=word):
            parse_spec(bad)


def test_missing_still_names_the_file(dataset, tmp_path):
    with pytest.raises(SyntheticError, match="no_such_still"):
        open_synthetic("synthetic:camvid-val/no_such_still?motion=pan", root=dataset("camvid"))


def test_deterministic_sized_and_labelled(dataset):
    root = dataset("camvid")
    a = list(open_synthetic(PAN, size=(160, 120), root=root))
    b = list(open_source(PAN, size=(160, 120)))  # the hook every --video goes through
    assert len(a) == len(b) == 60
    assert all(np.array_equal(x.rgb, y.rgb) and np.array_equal(x.label, y.label)
               for x, y in zip(a, b, strict=True))
    assert a[0].rgb.shape == (120, 160, 3) and a[0].label.shape == (120, 160)
    assert a[0].label.max() <= 11 and len(np.unique(a[0].label)) > 3
    assert not np.array_equal(a[0].rgb, a[-1].rgb)


def test_pan_moves_the_scene_left_at_constant_speed(dataset):
    frames = list(open_synthetic(PAN, size=(160, 120), root=dataset("camvid")))
    # window 0.6 x 960 px sweeps the remaining 384 px in 60 frames: 6.4 still px per frame,
    # x 160/576 output px per still px = 1.78 px per frame; content moves left
    shifts = [_shift(frames[i].rgb, frames[i + 5].rgb) for i in (0, 25, 50)]
    for dx, dy in shifts:
        assert dx == pytest.approx(-5 * 1.78, abs=1.0) and abs(dy) < 0.5


def test_zoom_magnifies_and_shake_wobbles(dataset):
    root = dataset("camvid")
    zoom = list(open_synthetic("synthetic:camvid-val/0016E5_08085?motion=zoom&seconds=1&fps=4",
                               size=(160, 120), root=root))
    first, last = zoom[0].rgb, zoom[-1].rgb
    # the centre of the first frame, magnified by the zoom so far, is the last frame
    ratio = (0.45 / 0.9) ** (3 / 4)
    h, w = int(120 * ratio), int(160 * ratio)
    centre = first[60 - h // 2:60 - h // 2 + h, 80 - w // 2:80 - w // 2 + w]
    up = cv2.resize(centre, (160, 120), interpolation=cv2.INTER_LINEAR)
    err_zoom = np.abs(up.astype(int) - last).mean()
    err_none = np.abs(first.astype(int) - last).mean()
    assert err_zoom < 0.5 * err_none
    shake = list(open_source(DEV_SET[2] + "&seconds=1", size=(160, 120)))
    moves = [_shift(shake[i].rgb, shake[i + 1].rgb) for i in range(0, 29, 4)]
    assert max(abs(dx) + abs(dy) for dx, dy in moves) > 0.5  # it moves ...
    assert abs(sum(dx for dx, _ in moves)) < 6  # ... back and forth, no drift


def test_frame_rate_subsampling_and_limits(dataset):
    root = dataset("camvid")
    full = list(open_synthetic(PAN, size=(96, 72), root=root))
    five = open_synthetic(PAN, size=(96, 72), fps=5, root=root)
    assert len(five) == 10 and five.fps == 5 and five.source_fps == 30
    sub = list(five)
    assert [f.t for f in sub] == pytest.approx([n / 5 for n in range(10)])
    assert all(np.array_equal(f.rgb, full[6 * f.index].rgb) for f in sub)
    assert len(list(open_synthetic(PAN, size=(96, 72), max_frames=3, root=root))) == 3
    with pytest.raises(ValueError, match="fps 60"):
        open_synthetic(PAN, fps=60, root=root)


def test_sweep_specs_take_synthetic_clips(tmp_path):
    spec = load_spec({"base": {"trace": "traces/lte.csv"},
                      "grid": [{"video": [PAN, "default"], "scheme": "uniform"}]})
    assert resolve(spec, {"video": PAN, "trace": "traces/lte.csv"})["video"] == PAN
