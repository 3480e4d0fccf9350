"""`stac-sim run` end to end: the issue's acceptance commands, and its error messages.

The model is an untrained small network saved as a checkpoint (mechanics only: timing,
queueing, bytes); frames are resized to 96x64 to keep the suite fast.
"""

import json

import pandas as pd
import pytest

from stac.cli import main
from stac.results import FRAME_COLUMNS, SECOND_COLUMNS, SECOND_TAIL


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STAC_CACHE", str(tmp_path_factory.getbasetemp() / "stac-cache"))


def _check_outputs(out, frames_expected, knobs):
    frames = pd.read_csv(out / "frames.csv")
    seconds = pd.read_csv(out / "seconds.csv")
    assert tuple(frames.columns) == FRAME_COLUMNS + knobs
    assert tuple(seconds.columns) == SECOND_COLUMNS + knobs + SECOND_TAIL
    assert len(frames) == frames_expected and list(seconds["second"]) == list(range(10))
    assert (out / "timeline.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    for key in ("scheme", "video", "trace", "model", "frames", "keyframes", "wall_s",
                "versions", "seed", "frame_stats", "second_stats"):
        assert key in summary
    assert summary["frames"] == frames_expected
    assert summary["keyframes"] == int(frames["keyframe"].sum()) == 100  # 10 fps x 10 s
    return frames, seconds, summary


@pytest.mark.slow
def test_run_lte_h264_10s(tmp_path, repo_root, checkpoint, capsys):
    out = tmp_path / "out"
    rc = main(["run", "--trace", str(repo_root / "traces" / "lte.csv"), "--scheme", "h264",
               "--duration", "10", "--model", str(checkpoint), "--size", "96x64",
               "--tuner", "fixed", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "frames 250" in printed and "keyframes 100" in printed
    frames, seconds, summary = _check_outputs(out, 250, ("qp", "fps"))
    assert (frames["qp"] == 30).all() and (seconds["fps"] == 10).all()
    assert summary["scheme"] == "h264" and summary["trace"].endswith("lte.csv")
    assert frames["t_arrived"].notna().sum() >= 95  # ~20 Mbps: nearly everything arrives


@pytest.mark.slow
def test_run_imported_mahimahi_trace(tmp_path, dataset, checkpoint):
    trace = tmp_path / "tmobile.csv"
    src = dataset("lte-mahimahi") / "TMobile-LTE-short.up"
    assert main(["traces", "import", "--format", "mahimahi", str(src), "-o", str(trace)]) == 0
    out = tmp_path / "out"
    rc = main(["run", "--trace", str(trace), "--scheme", "jpeg", "--duration", "10",
               "--model", str(checkpoint), "--size", "96x64", "--out", str(out)])
    assert rc == 0
    _, seconds, _ = _check_outputs(out, 250, ("quality", "fps"))
    assert (seconds["bandwidth_kbps"] >= 0).all() and seconds["bitrate_kbps"].gt(0).all()


def test_missing_checkpoint_is_a_clear_error(tmp_path, repo_root, capsys):
    rc = main(["run", "--trace", str(repo_root / "traces" / "lte.csv"),
               "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "nope.pt: no such checkpoint" in capsys.readouterr().err


def test_bad_trace_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,bandwidth_kbps\n0,100\n1,-5\n")
    rc = main(["run", "--trace", str(bad), "--model", "untrained:drn_d_22",
               "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and ":3" in err


def test_an_option_the_scheme_lacks_is_an_error_naming_its_options(tmp_path, repo_root,
                                                                    capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--trace", str(repo_root / "traces" / "lte.csv"), "--scheme", "h264",
              "--B", "4", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "scheme 'h264' has no option --B 4" in err
    assert "--qp (default 30)" in err and "--fps (default 10.0)" in err
    assert not (tmp_path / "o").exists()


def test_run_help_lists_every_scheme_with_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for option in ("--qp", "--quality", "--B", "--level", "--tables"):
        assert option in out
