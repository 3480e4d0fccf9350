"""The experiment library's pure parts: spec expansion, run ids, analysis of a runs table."""

import math

import numpy as np
import pandas as pd
import pytest

from stac.experiment import (
    SpecError,
    bd_rate_between,
    bd_rates,
    expand,
    full_config,
    is_done,
    load_spec,
    pareto_front,
    plan,
    plot_accuracy_bitrate,
    run_id,
)
from stac.metrics import bd_rate, rd_front

SPEC = """
[base]
video = "default"
trace = "traces/lte.csv"
duration = 4
tuner = "fixed"
[[grid]]
scheme = "uniform"
level = [10, 22]
fps = [5, 10]
[[grid]]
scheme = "h264"
qp = [26, 38]
"""


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_expands_to_the_cartesian_product_per_grid_table(tmp_path):
    runs = expand(load_spec(write(tmp_path, SPEC)))
    assert len(runs) == 2 * 2 + 2
    assert runs[0] == {"video": "default", "trace": "traces/lte.csv", "duration": 4,
                       "tuner": "fixed", "scheme": "uniform", "level": 10, "fps": 5}
    assert [(r["level"], r["fps"]) for r in runs[:4]] == [(10, 5), (10, 10), (22, 5), (22, 10)]
    assert [r["qp"] for r in runs[4:]] == [26, 38]
    assert all("level" not in r for r in runs[4:])


def test_base_lists_are_swept_and_grid_values_override_the_base(tmp_path):
    spec = load_spec({"base": {"scheme": "h264", "seed": [0, 1], "qp": 30, "tuner": "fixed"},
                      "grid": [{"qp": [20, 40]}, {}]})
    runs = expand(spec)
    assert [(r["seed"], r["qp"]) for r in runs] == [(0, 20), (0, 40), (1, 20), (1, 40),
                                                   (0, 30), (1, 30)]


def test_sizes_are_strings_or_pairs_and_a_flat_list_of_numbers_is_an_error(tmp_path):
    spec = load_spec({"base": {"size": ["96x64", [160, 96]]}})
    assert [r["size"] for r in expand(spec)] == ["96x64", "160x96"]
    with pytest.raises(SpecError, match="WxH"):
        expand(load_spec({"base": {"size": [96, 64]}}))
    with pytest.raises(SpecError, match="size 'big'"):
        expand(load_spec({"base": {"size": "big"}}))


def test_a_grid_over_knobs_must_name_its_tuner():
    """Under the default tuner the grid's knobs would only be starting points."""
    with pytest.raises(SpecError, match=r"sweeps level without naming a tuner.*\"fixed\""):
        expand(load_spec({"grid": [{"scheme": "uniform", "level": [10, 22]}]}))
    with pytest.raises(SpecError, match="sweeps qp without"):  # the default scheme, h264
        expand(load_spec({"base": {"qp": [20, 40], "seed": [0, 1]}}))
    for tuner in ("fixed", "auto"):  # either, said explicitly
        assert len(expand(load_spec({"base": {"tuner": tuner},
                                     "grid": [{"scheme": "uniform", "level": [10, 22]}]}))) == 2
    # sweeping what is not a knob (seeds, traces, a non-knob parameter) needs no tuner
    assert len(expand(load_spec({"base": {"scheme": "h264", "seed": [0, 1]}}))) == 2
    assert len(expand(load_spec({"base": {"scheme": "accmpeg", "threshold": [0.1, 0.2]}}))) == 2


def test_bad_specs_are_specific_errors(tmp_path):
    with pytest.raises(SpecError, match="no such sweep spec"):
        load_spec(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "[base\n"))
    with pytest.raises(SpecError, match="'delay_ms'"):
        load_spec({"base": {"delay-ms": 10}})
    with pytest.raises(SpecError, match="empty list"):
        load_spec({"grid": [{"qp": []}]})
    with pytest.raises(SpecError, match="unknown top-level"):
        load_spec({"bases": {}})
    with pytest.raises(SpecError, match="chosen by the sweep"):
        load_spec({"base": {"out": "x"}})


def test_paths_resolve_from_the_spec_folder_then_the_cwd(tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    (tmp_path / "mine.csv").write_text((repo_root / "traces" / "lte.csv").read_text())
    spec = write(tmp_path, '[base]\nscheme = "h264"\ntrace = ["mine.csv", "traces/lte.csv"]\n')
    tasks = plan(spec, tmp_path / "out")
    assert [t["params"]["trace"] for t in tasks] == [str(tmp_path / "mine.csv"),
                                                    str(repo_root / "traces" / "lte.csv")]
    assert [t["columns"]["trace"] for t in tasks] == ["mine.csv", "traces/lte.csv"]
    toml = '[base]\ntrace = "mine.csv"\nschedule = {3 = 5.0}\n'
    assert plan(write(tmp_path, toml, "s.toml"), tmp_path)[0]["params"]["schedule"] == {3: 5.0}
    with pytest.raises(SpecError, match="'nowhere.csv' is neither in"):
        plan(write(tmp_path, '[base]\ntrace = "nowhere.csv"\n', "b.toml"), tmp_path / "out")


def test_run_id_is_stable_and_covers_every_option(repo_root):
    params = {"trace": str(repo_root / "traces" / "lte.csv"), "scheme": "h264", "qp": 30,
              "duration": 1}
    config, error = full_config(params)
    assert error is None
    assert "out" not in config and config["qp"] == 30 and config["seed"] == 0
    rid = run_id(config)
    assert rid.startswith("h264-") and len(rid) == len("h264-") + 12
    assert run_id(full_config(dict(params))[0]) == rid  # same options, same id
    assert run_id(full_config({**params, "duration": 1.0})[0]) == rid  # 1 and 1.0 alike
    assert run_id(full_config({**params, "qp": 30, "seed": 0})[0]) == rid  # defaults spelled
    changed = {"trace": str(repo_root / "traces" / "wifi.csv"), "video": "x.mp4",
               "model": "untrained:drn_d_22", "duration": 2, "fps": 5.0,
               "source_fps": 12.5, "size": (96, 64), "qp": 31, "profile": "measured",
               "seed": 1, "delay_ms": 30.0, "downlink_delay_ms": 5.0, "downlink_kbps": 100.0,
               "schedule": {1: 5.0}, "tuner": "offline:p.csv", "estimator": "harmonic",
               "trace_scale": 0.05, "trace_start": 30.0}
    ids = {rid}
    for key, value in changed.items():
        new = run_id(full_config({**params, key: value})[0])
        assert new not in ids, key
        ids.add(new)
    jpeg = {k: v for k, v in params.items() if k != "qp"} | {"scheme": "jpeg"}
    assert run_id(full_config(jpeg)[0]) not in ids  # another scheme
    # every option was varied (the scheme's name and its parameters included)
    assert set(changed) | {"scheme", "out", "use_cache", "overwrite"} >= set(config)
    assert run_id(full_config({**params, "use_cache": False})[0]) == rid  # not a result


def test_invalid_options_are_reported_not_raised(repo_root):
    config, error = full_config({"trace": "t.csv", "no_such_option": 1})
    assert error is not None and "no_such_option" in error
    assert config == {"trace": "t.csv", "no_such_option": 1}


def test_is_done_needs_the_row_file(tmp_path):
    folder = tmp_path / "runs" / "h264-abc"
    folder.mkdir(parents=True)
    (folder / "frames.csv").write_text("frame\n")  # a killed run's leftovers
    assert not is_done(tmp_path, "h264-abc")
    (folder / "row.json").write_text("{}")
    assert is_done(tmp_path, "h264-abc")


def runs_table():
    rows = []
    for scheme, scale in (("a", 1.0), ("b", 2.0)):
        for kbps, pa in ((100, 0.80), (200, 0.85), (400, 0.90), (300, 0.84)):
            rows.append({"run_id": f"{scheme}{kbps}", "status": "ok", "scheme": scheme,
                         "kbps": kbps * scale, "pa": pa, "clip": "c"})
    rows.append({"run_id": "bad", "status": "failed", "scheme": "a", "kbps": math.nan,
                 "pa": math.nan, "clip": "c"})
    return pd.DataFrame(rows)


def test_pareto_front_drops_dominated_and_failed_runs():
    front = pareto_front(runs_table())
    assert list(front["run_id"]) == ["a100", "a200", "a400", "b100", "b200", "b400"]
    r, q = rd_front(runs_table().query("scheme == 'a' and status == 'ok'")["kbps"],
                    runs_table().query("scheme == 'a' and status == 'ok'")["pa"])
    assert np.array_equal(front[front["scheme"] == "a"]["kbps"].to_numpy(), r)


def test_bd_rate_of_a_curve_at_twice_the_rate_is_plus_100_percent():
    runs = runs_table()
    assert bd_rate_between(runs, "a", "b") == pytest.approx(1.0)
    table = bd_rates(runs, reference="a", by=("clip",))
    assert list(table["scheme"]) == ["b"] and table["clip"].iloc[0] == "c"
    assert table["bd_rate"].iloc[0] == pytest.approx(-0.5)
    assert table["saving"].iloc[0] == pytest.approx(0.5)
    assert (table["lo"].iloc[0], table["hi"].iloc[0]) == (0.80, 0.90)
    assert table["ref_range"].iloc[0] == table["other_range"].iloc[0] == (0.80, 0.90)
    a = runs.query("scheme == 'a' and status == 'ok'")
    b = runs.query("scheme == 'b'")
    assert table["bd_rate"].iloc[0] == pytest.approx(
        bd_rate(*rd_front(b["kbps"], b["pa"]), *rd_front(a["kbps"], a["pa"])))


def test_bd_rates_note_why_a_pair_cannot_be_compared():
    runs = runs_table()
    runs.loc[runs["scheme"] == "b", "pa"] = [0.5, 0.6, 0.7, 0.55]  # no overlap with a
    one = bd_rates(runs, reference="a")
    assert math.isnan(one["bd_rate"].iloc[0]) and "overlap" in one["note"].iloc[0]
    with pytest.raises(ValueError, match="needs two"):
        bd_rate_between(runs[runs["run_id"] != "a200"].iloc[:1], "a", "a")


def test_plot_has_one_line_per_scheme_and_style():
    import matplotlib

    matplotlib.use("Agg")
    runs = runs_table()
    runs["fps"] = [5, 5, 10, 10, 5, 5, 10, 10, 5]
    fig = plot_accuracy_bitrate(runs, metrics=("pa",), style="fps", col="clip")
    ax = fig.axes[0]
    assert sorted(line.get_label() for line in ax.lines) == [
        "a @10 fps", "a @5 fps", "b @10 fps", "b @5 fps"]
    assert ax.get_xscale() == "log"
