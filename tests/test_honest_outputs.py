"""Honest outputs and clean errors of `stac-sim run` (issue 13, "A new user's path").

Runs are tiny (an untrained small DRN saved as a checkpoint, 64x48 frames, h264, under a
second of video): mechanics only, no accuracy claims.
"""

import contextlib
import json
import os
import subprocess
import sys
import warnings

import av
import cv2
import pytest

from edge.models.registry import ModelError, load_model
from stac.cli import build_parser, main
from stac.frames import FrameError, check_timing, default_clip_path, open_source
from stac.notices import InputWarning
from stac.results import ERROR_FILE, RunFolder, RunFolderError
from stac.traces import TraceError, import_trace, load_trace


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "gt-cache"))


def _run(repo_root, checkpoint, out, *extra, duration="0.4"):
    return main(["run", "--trace", str(repo_root / "traces" / "lte.csv"), "--model",
                 str(checkpoint), "--size", "64x48", "--duration", duration, "--out", str(out),
                 *extra])


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


# ----------------------------------------------------------------------------- --duration


@pytest.mark.parametrize("duration", ["0", "-1", "nan"])
def test_non_positive_duration_is_a_clear_error(duration, tmp_path, repo_root, checkpoint,
                                                capsys):
    out = tmp_path / "out"
    assert _run(repo_root, checkpoint, out, duration=duration) == 2
    err = capsys.readouterr().err
    assert "--duration must be a positive number of seconds" in err
    assert _siblings(out) == []  # nothing written, no partial or failed folder


def test_duration_longer_than_the_clip_warns_and_records_the_real_one(tmp_path, repo_root,
                                                                      checkpoint, capsys):
    frames = _image_folder(tmp_path / "imgs", 3)  # 3 frames at 5 fps: 0.6 s
    out = tmp_path / "out"
    assert _run(repo_root, checkpoint, out, "--video", str(frames), "--source-fps", "5",
                "--fps", "5", duration="30") == 0
    err = capsys.readouterr().err
    assert "warning: imgs: --duration 30 s is longer than the video (0.6 s, 3 frames" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["options"]["duration"] == pytest.approx(0.6)
    assert summary["video_s"] == pytest.approx(0.6) and summary["frames"] == 3


def test_fps_above_the_source_rate_is_an_error(tmp_path, repo_root, checkpoint, capsys):
    assert _run(repo_root, checkpoint, tmp_path / "out", "--fps", "100") == 2
    err = capsys.readouterr().err
    assert "--fps 100 is above the frame rate of bikes (25 fps)" in err
    source = open_source("default", max_frames=2)
    assert check_timing(source, 25.0, None) is None  # the source's own rate is fine
    with pytest.raises(ValueError, match="positive"):
        check_timing(source, 0.0, None)


# ----------------------------------------------------------------------------- --out


def test_out_pointing_at_a_file_is_a_clear_error(tmp_path, repo_root, checkpoint, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    assert _run(repo_root, checkpoint, out) == 2
    err = capsys.readouterr().err
    assert f"{out}: exists and is not a folder" in err and "Errno" not in err
    assert out.read_text() == "not a folder"


def test_non_empty_out_needs_overwrite(tmp_path, repo_root, checkpoint, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    assert _run(repo_root, checkpoint, out) == 2
    assert "folder is not empty (old.txt); pass --overwrite" in capsys.readouterr().err
    assert (out / "old.txt").read_text() == "keep me"
    assert _run(repo_root, checkpoint, out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "frames.csv", "seconds.csv", "summary.json", "timeline.png"]
    assert _siblings(out) == ["out"]  # no temporary folder left beside it


def test_failed_rerun_keeps_the_old_run_and_leaves_out_failed(tmp_path, repo_root,
                                                              checkpoint, capsys):
    """A run that fails mid-way (a corrupt 4th image) never touches OUT; its partial rows
    and the error are in OUT.failed/."""
    frames = _image_folder(tmp_path / "imgs", 6)
    out = tmp_path / "out"
    args = ("--video", str(frames), "--source-fps", "5", "--fps", "5", "--no-cache")
    assert _run(repo_root, checkpoint, out, *args, duration="1.2") == 0
    before = (out / "summary.json").read_text()
    (frames / "f003.png").write_bytes(b"\x89PNG not really")
    capsys.readouterr()
    assert _run(repo_root, checkpoint, out, *args, "--overwrite", duration="1.2") == 2
    err = capsys.readouterr().err
    assert "f003.png: cannot decode image" in err and "out.failed" in err
    assert (out / "summary.json").read_text() == before  # the old, complete run
    failed = tmp_path / "out.failed"
    assert "f003.png: cannot decode image" in (failed / ERROR_FILE).read_text()
    assert (failed / "frames.csv").exists() and not (failed / "summary.json").exists()
    assert _siblings(out) == ["out", "out.failed"]
    assert _run(repo_root, checkpoint, out, "--overwrite", duration="0.2") == 0
    assert _siblings(out) == ["out"]  # a later success clears the stale failure


def test_run_folder_context(tmp_path):
    out = tmp_path / "a" / "run"
    with pytest.raises(KeyError), RunFolder(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith("run.partial-")
        raise KeyError("nothing written yet")
    assert list(out.parent.iterdir()) == []  # failed before writing: nothing left
    with pytest.raises(RuntimeError) as info, RunFolder(out) as tmp:
        (tmp / "frames.csv").write_text("frame\n0\n")
        raise RuntimeError("boom")
    assert info.value.failed_folder == tmp_path / "a" / "run.failed"
    assert "RuntimeError: boom" in (info.value.failed_folder / ERROR_FILE).read_text()
    assert not out.exists()
    with RunFolder(out) as tmp:
        (tmp / "summary.json").write_text("{}")
    assert (out / "summary.json").exists() and not (tmp_path / "a" / "run.failed").exists()
    with pytest.raises(RunFolderError, match="pass --overwrite"), RunFolder(out):
        pass
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunFolderError, match="is a file, not a folder"), \
            RunFolder(blocker / "run"):
        pass


# ----------------------------------------------------------------------------- videos


def _faststart_copy(dst):
    """bikes.mp4 remuxed with its index first, so a prefix of the file still opens."""
    with av.open(str(default_clip_path())) as inp, \
            av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream_from_template(s_in)
        for packet in inp.demux(s_in):
            if packet.dts is None:
                continue
            packet.stream = s_out
            out.mux(packet)
    return dst


def test_truncated_video_warns_how_many_frames_were_read(tmp_path):
    whole = _faststart_copy(tmp_path / "whole.mp4")
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(0.3 * len(data))])
    source = open_source(cut)
    assert len(source) == 250  # what the file declares
    with pytest.warns(InputWarning, match=r"cut.mp4: read (\d+) of the 250 frames") as rec:
        n = sum(1 for _ in source)
    assert 0 < n < 250 and f"read {n} of the 250" in str(rec[0].message)
    with warnings_as_errors():  # the complete file: no warning
        assert sum(1 for _ in open_source(whole)) == 250


def test_unreadable_video_names_the_file_and_the_problem(tmp_path, repo_root, checkpoint,
                                                         capsys):
    data = default_clip_path().read_bytes()  # its index is at the end: a prefix cannot open
    bad = tmp_path / "first30.mp4"
    bad.write_bytes(data[: int(0.3 * len(data))])
    with pytest.raises(FrameError) as info:
        open_source(bad)
    msg = str(info.value)
    assert msg.startswith(f"{bad}: cannot open video (invalid data found when processing")
    assert "Errno" not in msg and "'" not in msg
    assert _run(repo_root, checkpoint, tmp_path / "out", "--video", str(bad)) == 2
    err = capsys.readouterr().err
    assert "first30.mp4: cannot open video" in err and "Errno" not in err


# ----------------------------------------------------------------------------- traces


def test_all_zero_trace_warns_that_nothing_can_be_delivered(tmp_path):
    path = tmp_path / "zero.csv"
    path.write_text("time_s,bandwidth_kbps\n0,0\n1,0\n2,0\n")
    with pytest.warns(InputWarning, match=r"zero.csv: every bandwidth is 0 kbps .* nothing can"):
        load_trace(path)
    cooked = tmp_path / "zero.log"
    cooked.write_text("0\t0\n1\t0\n")
    with pytest.warns(InputWarning, match="nothing can be delivered"):
        import_trace(cooked, "cooked")
    path.write_text("time_s,bandwidth_kbps\n0,0\n1,5\n")
    with warnings_as_errors():
        load_trace(path)


@pytest.mark.parametrize("value", ["1e306", "nan", "-5", "inf", "2e9"])
def test_absurd_trace_values_are_rejected_with_file_and_line(tmp_path, value):
    path = tmp_path / "absurd.csv"
    path.write_text(f"time_s,bandwidth_kbps\n0,100\n1,{value}\n2,100\n")
    with pytest.raises(TraceError, match=r"absurd.csv:3: bandwidth .* (above|negative)"):
        load_trace(path)
    cooked = tmp_path / "absurd.log"
    cooked.write_text(f"0\t1\n1\t{float(value) / 1000}\n")
    with pytest.raises(TraceError, match=r"absurd.log:2: bandwidth"):
        import_trace(cooked, "cooked")


def test_absurd_trace_time_is_rejected(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("time_s,bandwidth_kbps\n0,100\n1e306,100\n")
    with pytest.raises(TraceError, match=r"t.csv:3: time 1e\+306 s is .* above"):
        load_trace(path)


# ----------------------------------------------------------------------------- models, CLI


def test_unknown_model_lists_the_known_ones(tmp_path, repo_root, capsys):
    with pytest.raises(ModelError, match=r"unknown model 'nosuch'; known models: .*bisenet"):
        load_model("nosuch")
    assert main(["run", "--trace", str(repo_root / "traces" / "lte.csv"), "--model", "nosuch",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    from edge.models.registry import list_models

    shipped = sorted(info.name for info in list_models() if info.checkpoint is not None)
    assert f"known models (shipped checkpoints): {', '.join(shipped)}" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    from stac import __version__

    assert capsys.readouterr().out.strip() == f"stac-sim {__version__}"


def test_help_shows_the_defaults():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    text = " ".join(sub["run"].format_help().split())
    for expected in ("grace, h264, jpeg, stac, stac-plus, uniform (default h264)",
                     "--qp x264 uniform quantisation parameter (default 30",
                     "uplink one-way delay (default 20.0)", "--seed SEED (default 0)"):
        assert expected in text
    assert "(default: None)" not in text and "(default: nan)" not in text
    emulate = " ".join(sub["emulate"].format_help().split())
    assert "number of device processes (default: 1)" in emulate
    synth = " ".join(sub["traces"]._subparsers._group_actions[0].choices["synth"]
                     .format_help().split())
    assert "--seconds SECONDS default: 300.0" in synth


def test_codec_compile_is_announced_when_not_cached(tmp_path, repo_root):
    """With an empty numba cache, creating an encoder says it will compile (and where)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "nb"), "PYTHONPATH": str(repo_root)}
    code = "from stac.codec import Encoder, Decoder; Encoder(16, 16); Decoder()"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("compiling the codec once") == 1
    assert f"cached afterwards in {tmp_path / 'nb'}" in res.stderr


@pytest.mark.slow
def test_codec_compile_notice_is_silent_once_cached(tmp_path, repo_root):
    """After one encode/decode has compiled into the cache, a new process says nothing."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "nb"), "PYTHONPATH": str(repo_root)}
    code = ("import numpy as np; from stac.codec import Encoder, Decoder\n"
            "e, d = Encoder(32, 32), Decoder(); x = np.full((32, 32, 3), 90, np.uint8)\n"
            "[d.decode(e.encode(x, 20).data) for _ in range(2)]")
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=1200) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert "compiling the codec once" in runs[0].stderr
    assert "compiling the codec once" not in runs[1].stderr


# ----------------------------------------------------------------------------- helpers


def _image_folder(folder, n):
    """`n` real frames of the default clip as PNG files f000.png, f001.png, ..."""
    folder.mkdir()
    for frame in open_source("default", size=(64, 48), max_frames=n):
        cv2.imwrite(str(folder / f"f{frame.index:03d}.png"),
                    cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    return folder


@contextlib.contextmanager
def warnings_as_errors():
    """Inside: any warning raises (a check that none is emitted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_emulator_warns_when_the_edge_falls_behind():
    from stac.commands.emulate import behind_real_time

    def result(backlog, *p50s):
        devices = [{"summary": {"frame_stats": {"delay_s": {"p50": p}}}} for p in p50s]
        return {"edge": {"compute": {"backlog_mean_active": backlog}},
                "devices": devices + [{"summary": None}]}

    assert behind_real_time(result(1.1, 0.2, 0.3)) is None
    assert behind_real_time(result(None, None)) is None
    late = behind_real_time(result(1.2, 0.2, 30.0))
    assert "fell behind real time" in late and "median delay 30.00 s" in late
    assert "--size" in late and "--model" in late
    queued = behind_real_time(result(6.5, 0.4))
    assert "6.5 keyframes at the edge on average" in queued
