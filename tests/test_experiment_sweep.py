"""End-to-end sweeps: the CLI on the local pool, resume after a killed run, Ray's identical
table, a failing run reported without stopping the sweep."""

import json

import pandas as pd
import pytest

from stac.cli import main
from stac.experiment import load_frames, load_runs, load_seconds, run_dir, sweep

pytestmark = pytest.mark.slow

SPEC = """
[base]
video = "default"
trace = "traces/lte.csv"
duration = 1
size = "96x64"
model = "untrained:drn_d_22"
tuner = "fixed"
[[grid]]
scheme = "h264"
qp = [26, 99]  # 99 is out of x264's range: that run fails
[[grid]]
scheme = "jpeg"
quality = 60
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory, repo_root):
    folder = tmp_path_factory.mktemp("spec")
    (folder / "traces").mkdir()
    (folder / "traces" / "lte.csv").write_text((repo_root / "traces" / "lte.csv").read_text())
    path = folder / "spec.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("STAC_CACHE", str(tmp_path_factory.getbasetemp() / "stac-cache"))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def local(spec, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    rc = main(["sweep", str(spec), "--out", str(out), "--workers", "2", "--no-progress"])
    return out, rc


def test_cli_writes_the_table_plot_and_run_folders(local):
    out, rc = local
    assert rc == 1  # one run failed
    runs = load_runs(out)
    assert list(runs["scheme"]) == ["h264", "h264", "jpeg"]
    assert list(runs["status"]) == ["ok", "failed", "ok"]
    assert list(runs["qp"].fillna(-1)) == [26, 99, -1]
    # qp 99 is refused by the scheme's dataclass before anything runs, naming the range
    assert "SchemeError: scheme 'h264': qp must be in [1, 51], got 99" in runs.loc[1, "error"]
    for column in ("run_id", "video", "trace", "duration", "size", "model", "quality", "kbps",
                   "pa", "miou", "key_pa", "key_miou", "delay_mean", "result_age_mean",
                   "result_age_s_mean", "dropped", "wall_s", "error"):
        assert column in runs.columns, column
    ok = runs[runs["status"] == "ok"]
    assert (ok["kbps"] > 0).all() and ok["pa"].between(0, 1).all()
    assert ok["key_pa"].between(0, 1).all() and ok["key_miou"].between(0, 1).all()
    assert (out / "accuracy_bitrate.png").stat().st_size > 0
    failed = run_dir(out, runs.loc[1, "run_id"])
    assert not failed.exists()  # a refused run leaves no folder
    assert not list((out / "runs").glob(".tmp-*"))
    for rid in ok["run_id"]:
        frames = load_frames(out, rid)
        seconds = load_seconds(out, rid)
        summary = json.loads((run_dir(out, rid) / "summary.json").read_text())
        assert len(frames) == 25 and len(seconds) == 1
        row = ok[ok["run_id"] == rid].iloc[0]
        assert row["pa"] == pytest.approx(frames["pa"].mean())
        assert row["kbps"] == pytest.approx(frames["bytes"].sum() * 8 / 1000)
        assert row["delay_mean"] == pytest.approx(frames["delay_s"].mean())
        assert row["dropped"] == frames["dropped"].sum()
        assert summary["options"]["out"] == str(run_dir(out, rid))


def test_resume_runs_only_the_missing_and_failed_runs(local, spec):
    out, _ = local
    before = load_runs(out)
    ok_ids = list(before.loc[before["status"] == "ok", "run_id"])
    killed, kept = run_dir(out, ok_ids[0]), run_dir(out, ok_ids[1])
    (killed / "row.json").unlink()  # as if killed before it finished: folder incomplete
    (killed / "timeline.png").unlink()
    (out / "runs" / f".tmp-{ok_ids[0]}-999").mkdir()  # a killed worker's temp folder
    (out / "runs.csv").unlink()
    kept_mtime = (kept / "summary.json").stat().st_mtime_ns
    after = sweep(spec, out, workers=2, progress=False)
    assert (kept / "summary.json").stat().st_mtime_ns == kept_mtime  # not run again
    assert (killed / "row.json").is_file() and (killed / "timeline.png").is_file()
    assert not list((out / "runs").glob(".tmp-*"))
    assert list(after["run_id"]) == list(before["run_id"])
    assert list(after["status"]) == ["ok", "failed", "ok"]  # the failed run was tried again
    same = after.drop(columns="wall_s")
    pd.testing.assert_frame_equal(same, before.drop(columns="wall_s"), check_dtype=False)
    assert after.loc[after["run_id"] == ok_ids[1], "wall_s"].item() == pytest.approx(
        before.loc[before["run_id"] == ok_ids[1], "wall_s"].item())
    pd.testing.assert_frame_equal(load_runs(out), load_runs(out))  # runs.csv rebuilt
    assert len(load_runs(out)) == 3


def test_ray_gives_the_same_table(local, spec, tmp_path):
    pytest.importorskip("ray")
    out, _ = local
    ray_table = sweep(spec, tmp_path / "ray", backend="ray", workers=2, progress=False)
    local_table = load_runs(out)
    pd.testing.assert_frame_equal(load_runs(tmp_path / "ray").drop(columns="wall_s"),
                                  local_table.drop(columns="wall_s"))
    assert list(ray_table["run_id"]) == list(local_table["run_id"])
    for rid in local_table.loc[local_table["status"] == "ok", "run_id"]:
        pd.testing.assert_frame_equal(load_frames(tmp_path / "ray", rid), load_frames(out, rid))
