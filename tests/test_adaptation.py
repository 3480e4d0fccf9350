"""The adaptation experiments' library (stac.experiment.adaptation) and, slow, the script
experiments/adaptation.py on its small configuration."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stac.experiment.adaptation import (
    PAPER_MEAN_KBPS,
    Segment,
    adaptive_spec,
    attach_segments,
    best_fixed,
    binding_kbps,
    family_factor,
    family_mean_kbps,
    floor_kbps,
    fps_curves,
    looped_clip,
    pick_segments,
    pixel_factor,
    run_metrics,
)
from stac.experiment.results import RunResult
from stac.frames import open_source
from stac.traces import Trace, load_trace, save_trace


def test_pixel_factor_is_the_pixel_ratio_to_the_papers_stream():
    assert pixel_factor((2048, 1040)) == 1.0
    assert math.isclose(pixel_factor((480, 270)), 129600 / 2129920)
    assert math.isclose(pixel_factor((480, 204)), 0.0459735576923)


def test_paper_rule_gives_the_family_the_papers_mean_at_the_frame_size(tmp_path):
    a = save_trace(Trace(np.array([0.0, 10.0]), np.array([1000.0, 3000.0]), end_s=20.0),
                   tmp_path / "a.csv")
    b = save_trace(Trace(np.array([0.0]), np.array([500.0]), end_s=60.0), tmp_path / "b.csv")
    mean = (1000 * 10 + 3000 * 10 + 500 * 60) / 80  # time-weighted over both files
    assert family_mean_kbps([a, b]) == pytest.approx(mean)
    size = (480, 204)
    assert family_factor("fcc", size, [a, b], "pixel") == pixel_factor(size)
    paper = family_factor("fcc", size, [a, b], "paper")
    assert paper * mean == pytest.approx(PAPER_MEAN_KBPS["fcc"] * pixel_factor(size))
    with pytest.raises(ValueError, match="unknown scaling rule 'area'"):
        family_factor("fcc", size, [a], "area")


@pytest.fixture()
def traces(tmp_path):
    paths = []
    for i, seconds in enumerate((40.0, 100.0, 5.0)):  # the 5 s one is too short for 30 s
        n = int(seconds)
        t = Trace(np.arange(n, dtype=float), 100.0 * (i + 1) + np.arange(n), name=f"t{i}",
                  end_s=seconds)
        paths.append(save_trace(t, tmp_path / f"t{i}.csv"))
    return paths


def test_pick_segments_is_seeded_fits_its_trace_and_skips_short_ones(traces):
    a = pick_segments("x", traces, 4, 30.0, seed=3)
    assert a == pick_segments("x", traces, 4, 30.0, seed=3)
    assert a != pick_segments("x", traces, 4, 30.0, seed=4)
    assert len(a) == 4 and {s.family for s in a} == {"x"}
    assert {Path(s.trace).name for s in a} == {"t0.csv", "t1.csv"}  # t2 is 5 s long
    for s in a:
        assert s.start == int(s.start) and s.seconds == 30.0
        assert s.start + s.seconds <= load_trace(s.trace).duration
    assert len({Path(s.trace).name for s in a[:2]}) == 2  # distinct files before reuse
    low = pick_segments("x", traces, 2, 30.0, seed=3, min_kbps=150.0)  # t0's mean is ~120
    assert {Path(s.trace).name for s in low} == {"t1.csv"}
    with pytest.raises(ValueError, match="no trace of at least 200 s"):
        pick_segments("x", traces, 1, 200.0, seed=0)


def test_spec_and_segment_labels(traces):
    segs = [Segment("x", str(traces[0]), 3.0, 30.0), Segment("y", str(traces[1]), 7.0, 30.0)]
    spec = adaptive_spec(segs, [{"scheme": "stac", "tuner": "fixed", "B": 4.0},
                                {"scheme": "h264"}], {"video": "v"}, 0.05)
    assert spec["base"] == {"video": "v"} and len(spec["grid"]) == 4
    assert spec["grid"][2] == {"trace": str(traces[0]), "trace_start": 3.0,
                               "trace_scale": 0.05, "duration": 30.0, "scheme": "h264"}
    per_family = adaptive_spec(segs, [{"scheme": "h264"}], {}, {"x": 0.1, "y": 0.2})
    assert [g["trace_scale"] for g in per_family["grid"]] == [0.1, 0.2]
    runs = pd.DataFrame({"trace": [str(traces[1]), str(traces[0]), "other.csv"],
                         "trace_start": [7, 3, 3]})
    out = attach_segments(runs, segs)
    assert list(out["family"][:2]) == ["y", "x"] and pd.isna(out["family"][2])
    assert out["segment"][0] == "y/t1@7"


def test_looped_clip_plays_forward_then_backward(tmp_path):
    loop = looped_clip("default", (32, 16), 3.0, tmp_path, fps=5.0)
    files = sorted(loop.glob("*.png"))
    assert len(files) == 15  # 3 s at 5 fps
    order = [int(os.readlink(f).rsplit("/", 1)[1][:5]) for f in files]
    n = len(list((tmp_path / "bikes_32x16_5fps").glob("*.png")))  # bikes: 10 s -> 50 frames
    assert n == 50
    assert order == list(range(15))  # shorter than one pass: straight
    long = looped_clip("default", (32, 16), 25.0, tmp_path, fps=5.0)
    order = [int(os.readlink(f).rsplit("/", 1)[1][:5]) for f in sorted(long.glob("*.png"))]
    assert order[:50] == list(range(50)) and order[50:98] == list(range(48, 0, -1))
    assert order[98:] == list(range(125 - 98))  # then forward again, no frame repeated
    # the frames are the clip's own pixels at that size (PNG is lossless)
    direct = next(iter(open_source("default", size=(32, 16), fps=5.0)))
    looped = next(iter(open_source(long, fps=5.0)))
    np.testing.assert_array_equal(direct.rgb, looped.rgb)


def _run(tmp_path):
    frames = pd.DataFrame({
        "frame": range(8), "t_capture": np.arange(8) * 0.5,
        "keyframe": [1, 0, 1, 0, 1, 0, 1, 0], "dropped": [0, 0, 1, 0, 0, 0, 0, 0],
        "delay_s": [0.1] * 8, "result_age_frames": [0, 1, 2, 3, 0, 1, 0, 1],
        "pa": [0.9, 0.8, 0.7, 0.6, 0.9, 0.8, 0.9, 0.8], "miou": [0.5] * 8})
    seconds = pd.DataFrame({
        "second": range(4), "bitrate_kbps": [100.0, 300.0, 50.0, 104.0],
        "bandwidth_kbps": [200.0, 100.0, 1000.0, 100.0], "B": [4.0, 4.0, 2.0, 2.0],
        "fps": [2.0, 2.0, 2.0, 1.0], "c": [1.0] * 4, "d": [1.0] * 4, "pa": [0.8] * 4,
        "miou": [0.5] * 4, "bandwidth_estimate_kbps": [np.nan, 150.0, 100.0, 1000.0]})
    return RunResult(tmp_path, {}, frames, seconds)


def test_run_metrics_on_a_hand_made_run(tmp_path):
    m = run_metrics(_run(tmp_path), binding_kbps=500.0)
    assert m["pa"] == pytest.approx(0.8)
    assert m["overshoot_frac"] == 0.25  # second 1 (300 > 105); 104 is within 5%
    assert m["dropped_key_frac"] == 0.25  # one of four keyframes
    assert m["binding_frac"] == 0.75  # the 1000 kbps second does not bind
    assert m["utilisation_binding"] == pytest.approx((100 + 300 + 104) / (200 + 100 + 100))
    assert m["age_mean"] == pytest.approx(np.mean([0, .5, 1, 1.5, 0, .5, 0, .5]))
    assert m["changes"] == 2  # B at second 2, fps at second 3
    assert m["B_mean"] == 3.0 and m["delay_mean"] == pytest.approx(0.1)
    assert m["estimate_error"] == pytest.approx(np.mean([0.5, 0.9, 9.0]))
    assert math.isnan(m["overshoot_feasible_frac"])  # no floor given
    m = run_metrics(_run(tmp_path), binding_kbps=500.0, floor_kbps=150.0)
    assert m["feasible_frac"] == 0.5  # seconds 0 (200) and 2 (1000) fit the cheapest
    assert m["overshoot_feasible_frac"] == 0.0  # the overshoot (second 1) is below the floor
    m = run_metrics(_run(tmp_path), binding_kbps=500.0, floor_kbps=100.0)
    assert m["overshoot_feasible_frac"] == 0.25


def test_best_fixed_and_fps_curves():
    table = pd.DataFrame({"segment": ["a", "a", "b", "b"], "B": [1, 4, 1, 4],
                          "fps": [5, 5, 10, 10], "pa": [0.7, 0.8, 0.9, np.nan],
                          "overshoot_frac": 0.0, "delay_mean": 0.0, "age_mean": 0.0})
    best = best_fixed(table)
    assert list(best["B"]) == [4, 1] and list(best["pa"]) == [0.8, 0.9]
    rows = pd.DataFrame({"video": "v", "second": [0, 1, 0, 1], "B": [1, 1, 4, 4],
                         "fps": [5.0] * 4, "pa": [0.8, 0.9, 0.6, 0.7], "miou": 0.5,
                         "bitrate_kbps": [100.0, 300.0, 10.0, 30.0]})
    curves = fps_curves(rows)
    assert list(curves["kbps"]) == [200.0, 20.0] and list(curves["pa"]) == \
        pytest.approx([0.85, 0.65])


def test_binding_threshold_is_the_most_expensive_configuration(repo_root):
    path = repo_root / "tests" / "data" / "tuner_tiny" / "profiles.csv"
    df = pd.read_csv(path)
    top = df.groupby(["B", "fps"])["bitrate_kbps"].mean().max()
    assert binding_kbps(path) == top
    assert binding_kbps(path, "bikes") == \
        df[df.video == "bikes"].groupby(["B", "fps"])["bitrate_kbps"].mean().max()
    with pytest.raises(ValueError, match="no profile rows of 'nope'"):
        binding_kbps(path, "nope")
    assert floor_kbps(path) == df.groupby(["B", "fps"])["bitrate_kbps"].mean().min()
    with pytest.raises(ValueError, match="no profile rows of 'nope'"):
        floor_kbps(path, "nope")


@pytest.mark.slow
def test_small_fig12_runs_end_to_end(repo_root, tmp_path, shared_data):
    env = {**os.environ, "PYTHONPATH": str(repo_root), "STAC_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "fig"
    cmd = [sys.executable, str(repo_root / "experiments" / "adaptation.py"), "fig12",
           "--config", "small", "--families", "lte", "--schemes", "stac", "h264",
           "--work", str(tmp_path / "work"), "--out", str(out)]
    subprocess.run(cmd, check=True, env=env, cwd=tmp_path, timeout=600)
    record = json.loads((out / "fig12_summary.json").read_text())
    runs = pd.read_csv(out / "fig12_runs.csv")
    # stac (nn), h264, and the fixed grid (B 4 x fps 2.5, 5) on one lte segment
    assert sorted(runs["label"]) == ["fixed B4 fps2.5", "fixed B4 fps5", "h264", "stac"]
    assert (out / "fig12_distributions.png").stat().st_size > 1000
    seg = record["segments"][0]
    factor = record["factor"]["lte"]  # the small config's rule: the pixel ratio
    assert factor == pytest.approx(96 * 64 / (2048 * 1040)) == record["pixel_factor"]
    # the runs saw the segment's bandwidth, scaled: seconds.csv against the trace itself
    trace = load_trace(seg["trace"])
    for rid in runs["run_id"]:
        seconds = pd.read_csv(tmp_path / "work" / "sweep" / "runs" / rid / "seconds.csv")
        t = seconds["second"].to_numpy() + seg["start"]
        np.testing.assert_allclose(seconds["bandwidth_kbps"],
                                   factor * trace.bits_between(t, t + 1) / 1000, rtol=1e-5)
    # a second invocation finds every run done (resumable)
    again = subprocess.run(cmd, check=True, env=env, cwd=tmp_path, timeout=600,
                           capture_output=True, text=True)
    assert "outputs in" in again.stdout
    assert pd.read_csv(out / "fig12_runs.csv")["run_id"].tolist() == runs["run_id"].tolist()


def test_notebook_is_committed_without_outputs(repo_root):
    import nbformat

    book = nbformat.read(repo_root / "notebooks" / "adaptation.ipynb", as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)


@pytest.mark.slow
def test_notebook_executes_on_the_tiny_configuration(repo_root, tmp_path, shared_data):
    pytest.importorskip("ipykernel")
    import nbformat
    from nbclient import NotebookClient

    env = {**os.environ, "STAC_NB_TINY": "1", "STAC_NB_OUT": str(tmp_path / "nb"),
           "STAC_CACHE": str(tmp_path / "cache"), "STAC_NB_WORKERS": "1",
           "PYTHONPATH": os.pathsep.join([str(repo_root), os.environ.get("PYTHONPATH", "")])}
    book = nbformat.read(repo_root / "notebooks" / "adaptation.ipynb", as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(repo_root / "notebooks")}}
                   ).execute(env=env)
    outs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outs) == 4  # Figs. 12, 13, 15c, 16
    html = " ".join(o["data"]["text/html"] for o in outs if "text/html" in o.get("data", {}))
    assert "overshoot_frac" in html and "utilisation_binding" in html and "lte/" in html
    runs = [p for p in (tmp_path / "nb" / "sweep" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 2  # stac and h264 on one segment
