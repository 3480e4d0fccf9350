"""Fig. 11 analogue of STAC against both baselines of issue 17 (STAC §VIII-B): `stac`,
`accmpeg` over its quality pair x fps and `casva`'s offline curve over resolution x fps x
QP, with `uniform`/`grace`/`h264` alongside, from finished sweeps of the same clips.

    python experiments/fig11_baselines.py --out experiments/figures/fig11_baselines_dabnet \\
        --sweep PROFILES/stac/sweep --sweep ACCMPEG/sweep --sweep CASVA_PROF/sweep ... \\
        [--fps 5,10] [--width 480]

Each `--sweep` is an experiment-library sweep folder (its runs.csv) of fixed-configuration
runs over a constant wide trace: e.g. `stac-sim profile` campaigns (issue 12), the sweep of
`experiments/accmpeg_profile.py` and that of `stac-sim casva profile` (whose 36 cells per
clip are `casva`'s offline curve). Only runs on the two real clips at `--width` pixels wide
(bikes 480x204, solidWhiteRight 480x270 at 480) and, except `casva`, at a keyframe rate of
`--fps` are kept; `casva`'s cells are compared at every rate (as in
`fig11_accuracy_bitrate.py`, whose row shape, figure and BD-rate code this reuses).
Writes OUT/runs.csv, OUT/fig11.png (`casva` as its offline curve: the PA Pareto front of
its cells) and OUT/savings.json: per clip and fps, the saving
(= -BD-rate, each curve reduced to its Pareto front) at equal PA (all frames), keyframe PA
and mIoU of `stac` against every other scheme and of `accmpeg` against `casva`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def _fig11():
    """experiments/fig11_accuracy_bitrate.py as a module (row shape, plot, savings)."""
    spec = importlib.util.spec_from_file_location(
        "fig11_accuracy_bitrate", REPO / "experiments" / "fig11_accuracy_bitrate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clips(width: int) -> dict[str, tuple[str, str]]:
    """The two real clips at `width` pixels wide: name -> (video, WxH), as the profiles."""
    data = Path(os.environ.get("STAC_DATA") or REPO.parent / "shared" / "data")
    return {"bikes": ("default", f"{width}x{round(272 * width / 640 / 2) * 2}"),
            "solidWhiteRight": (str((data / "videos" / "solidWhiteRight.mp4").resolve()),
                                f"{width}x{round(540 * width / 960 / 2) * 2}")}


def read_sweeps(folders: list[Path], named: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """The ok runs of every sweep on the `named` clips at their sizes (videos compared as
    resolved paths, so that sweeps made from different working folders match)."""
    runs = pd.concat([pd.read_csv(Path(f) / "runs.csv") for f in folders], ignore_index=True)
    runs["video"] = [v if v == "default" else str(Path(v).resolve()) for v in runs["video"]]
    wanted = set(named.values())
    keep = pd.Series([(v, s) in wanted for v, s in zip(runs["video"], runs["size"],
                                                         strict=True)], index=runs.index)
    return runs[keep & (runs["status"] == "ok")].drop_duplicates("run_id")


def plotted(rows: pd.DataFrame, rate: float) -> pd.DataFrame:
    """The rows to draw: `casva`'s cells reduced to its offline curve (the PA Pareto front
    over all 36 cells, drawn once, at the first rate), every other scheme as it is."""
    from stac.experiment import pareto_front

    casva = rows[(rows["scheme"] == "casva") & (rows["fps"] == rate)]
    front = pareto_front(casva, "pa", by=("clip",)).assign(scheme="casva (offline curve)")
    return pd.concat([rows[rows["scheme"] != "casva"], front], ignore_index=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sweep", type=Path, action="append", required=True)
    p.add_argument("--fps", default="5,10", help="keyframe rates compared (default 5,10)")
    p.add_argument("--width", type=int, default=480)
    p.add_argument("--model", default="dabnet", help="the model of the runs (checked)")
    args = p.parse_args()
    fig11 = _fig11()
    rates = [float(v) for v in args.fps.split(",")]
    named = clips(args.width)
    runs = read_sweeps(args.sweep, named)
    if set(runs["model"]) != {args.model}:
        raise SystemExit(f"runs of models {sorted(set(runs['model']))}, expected {args.model}")
    rows = fig11.figure_rows(runs, named, rates)
    rows = rows[rows["fps"].isin(rates)].reset_index(drop=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out / "runs.csv", index=False)
    fig11.plot(plotted(rows, rates[0]), args.out / "fig11.png")
    result = {f"{ref}_vs_others": {
        f"savings_at_equal_{metric}": fig11.savings(rows, metric, ref)
        for metric in ("pa", "key_pa", "miou")} for ref in ("stac", "accmpeg")}
    result["runs"] = rows.groupby(["clip", "scheme"]).size().rename("n").reset_index() \
        .to_dict(orient="records")
    result["model"] = args.model
    result["machine"] = {"cpus": os.cpu_count(), "load": os.getloadavg(),
                         "platform": platform.platform()}
    (args.out / "savings.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.endswith("_others")}, indent=2))


if __name__ == "__main__":
    main()
