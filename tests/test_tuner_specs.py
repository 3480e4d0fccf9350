"""Tuner specs (edge.tuner): `auto` is each scheme's own default, a file-less spec is the
file shipped for the run's model (or a clear error), and `casva-content` is the network fed
one pre-encoded frame's content, which the device reports (§VIII-E)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

import edge.tuner as tuner_mod
from device.content import difference, frame_complexity
from device.flow import to_grey
from device.stac_agent import StacDevice
from edge.profiles import OfflineTuner, read_profiles
from edge.tables import tables_for
from edge.tuner import (
    FixedTuner,
    TunerFileError,
    content_source,
    make_tuner,
    resolve_spec,
)
from edge.tuner_net import NetTuner, train
from stac.notices import InputWarning
from stac.protocol import Config, Content

TINY = Path(__file__).resolve().parent / "data" / "tuner_tiny"


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A tuner folder holding weights for model "m" and a lookup profile for (m, h264)."""
    shutil.copy(TINY / "nn.pt", tmp_path / "m.pt")
    shutil.copy(TINY / "profiles.csv", tmp_path / "m-h264.csv")
    monkeypatch.setattr(tuner_mod, "TUNER_DIR", tmp_path)
    return tmp_path


def test_auto_is_the_schemes_own_tuner(shipped):
    assert resolve_spec("auto", scheme="stac", model="m") == f"nn:{shipped / 'm.pt'}"
    assert resolve_spec("auto", scheme="h264", model="m") == f"offline:{shipped / 'm-h264.csv'}"
    assert resolve_spec("auto", scheme="jpeg", model="m") == "fixed"
    assert resolve_spec("auto", {2: 5.0}, scheme="stac", model="m") == "fixed"
    assert isinstance(make_tuner("auto", {2: 5.0}, "stac", "m"), FixedTuner)
    assert isinstance(make_tuner("auto", None, "stac", "m"), NetTuner)
    assert isinstance(make_tuner("auto", None, "h264", "m"), OfflineTuner)


def test_auto_without_shipped_files_keeps_the_configuration_and_says_so(shipped):
    with pytest.warns(InputWarning, match="no tuner weights shipped for model 'other'"):
        assert resolve_spec("auto", scheme="stac", model="other") == "fixed"
    with pytest.warns(InputWarning, match="lookup profile .* scheme 'uniform'"):
        assert resolve_spec("auto", scheme="uniform", model="m") == "fixed"


def test_a_file_less_spec_is_the_shipped_file_or_a_clear_error(shipped):
    assert resolve_spec("nn", model="m") == f"nn:{shipped / 'm.pt'}"
    assert resolve_spec("nn:/x/w.pt", model="m") == "nn:/x/w.pt"
    with pytest.raises(TunerFileError, match=r"model 'other'.*stac-sim tuner train .*"
                                             r"--variant nn-no-c"):
        make_tuner("nn-no-c", model="other")
    with pytest.raises(TunerFileError, match=r"model 'm' and scheme 'grace'.*stac-sim profile"):
        make_tuner("offline", scheme="grace", model="m")
    with pytest.raises(ValueError, match="unknown tuner 'best'"):
        make_tuner("best")


def test_casva_content_is_the_full_network_fed_one_frame(shipped):
    tuner = make_tuner("casva-content", model="m")
    assert isinstance(tuner, NetTuner) and tuner.name == "casva-content"
    assert content_source("casva-content") == "frame"
    assert content_source("nn") == content_source("auto") == "second"
    nn = make_tuner("nn", model="m")
    config, content = Config.of({"B": 4.0, "fps": 5.0}), Content(second=2, c=9e3, d=6e4)
    assert tuner.step(2, 30.0, 40.0, config, content) == nn.step(2, 30.0, 40.0, config, content)
    ablation, _ = train(read_profiles(TINY / "profiles.csv"), "dashcam", variant="nn-no-c",
                        epochs=2)
    ablation.save(shipped / "ab.pt")
    with pytest.raises(ValueError, match="not of the full network"):
        make_tuner(f"casva-content:{shipped / 'ab.pt'}")


def _frames(n: int, size=(48, 32)):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return [np.roll(base, 2 * i, axis=1) ^ np.uint8(i) for i in range(n)]


@pytest.mark.parametrize("source", ["second", "frame"])
def test_the_device_reports_the_content_its_tuner_reads(source):
    """"second": means over the second (c on keyframes, d on every frame, §VI); "frame": c
    and d of the second's last frame alone, pre-encoded at the step (CASVA, §VIII-E)."""
    from edge.models.registry import resolve_model

    tables = tables_for(resolve_model("untrained:bisenet")).table_set()
    device = StacDevice(tables, Config.of({"B": 4.0, "fps": 5.0}), source_fps=10.0,
                        frame_size=(48, 32), content=source)
    frames = _frames(12)
    for i, frame in enumerate(frames):
        device.on_frame(i, i / 10.0, frame)
    got = device.content(0)
    greys = [to_grey(f) for f in frames]
    if source == "frame":
        assert got.c == pytest.approx(frame_complexity(frames[9]), rel=1e-12)
        assert got.d == difference(greys[9], greys[8])
    else:
        diffs = [difference(greys[i], greys[i - 1] if i else None) for i in range(10)]
        assert got.d == pytest.approx(np.mean(diffs), rel=1e-12)
        keyframe_c = [frame_complexity(frames[i]) for i in (0, 2, 4, 6, 8)]
        assert got.c == pytest.approx(np.mean(keyframe_c), rel=1e-6)
    with pytest.raises(ValueError, match="content must be one of"):
        StacDevice(tables, Config.of({"B": 4.0, "fps": 5.0}), source_fps=10.0,
                   frame_size=(48, 32), content="future")
