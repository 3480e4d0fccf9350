"""Fig. 11 analogue for CASVA (issue 17, STAC §VIII-B): `stac`'s accuracy-bitrate curve
against `casva`'s offline curve over resolution x fps x QP, BD-rate at equal PA per clip.

    python experiments/casva_fig11.py --runs out/fig11/runs.csv \\
        [--tables edge/checkpoints/casva_tables.csv] [--seconds 4] --out out/casva_fig11

`--runs` is the runs.csv of `experiments/fig11_accuracy_bitrate.py` (its `stac` rows, on
the clips at the tables' sizes, `--duration` = `--seconds`); `casva`'s points come from
the per-second tables of `stac-sim casva profile` (the same constant 200 Mbps trace), one
per grid cell: mean PA and mean kbps over the clip's first `--seconds` seconds, so both
curves cover the same frames. Prints JSON (also OUT/casva_fig11.json) with the saving of
`stac` against `casva` (= -BD-rate; 0.25: stac needs 25% fewer bits) per clip and both
fronts; OUT/casva_fig11.png shows the curves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from edge.casva_env import read_tables
from edge.casva_policy import SHIPPED
from stac.experiment import bd_rates, pareto_front


def casva_points(tables_csv: Path, seconds: int) -> pd.DataFrame:
    """One row per (clip, grid cell): mean PA, mIoU and kbps over the first `seconds`."""
    df = pd.read_csv(tables_csv)
    df = df[df["second"] < seconds]
    g = df.groupby(["video", "scale", "fps", "qp"], as_index=False)[
        ["pa", "miou", "bitrate_kbps"]].mean()
    return g.rename(columns={"video": "clip", "bitrate_kbps": "kbps"}).assign(scheme="casva")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--tables", type=Path, default=SHIPPED.parent / "casva_tables.csv")
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path("out") / "casva_fig11")
    args = p.parse_args()
    read_tables(args.tables)  # a complete grid, or a clear error
    stac = pd.read_csv(args.runs)
    stac = stac[stac["scheme"] == "stac"][["clip", "scheme", "value", "pa", "miou", "kbps"]]
    rows = pd.concat([stac, casva_points(args.tables, args.seconds)], ignore_index=True)
    out = {"seconds": args.seconds, "clips": {}}
    for metric in ("pa", "miou"):
        table = bd_rates(rows, reference="stac", metric=metric, by=("clip",))
        for r in table.itertuples():
            out["clips"].setdefault(r.clip, {})[f"saving_at_equal_{metric}"] = (
                None if pd.isna(r.saving) else round(float(r.saving), 4))
            out["clips"][r.clip][f"{metric}_range"] = [r.lo, r.hi]
            if r.note:
                out["clips"][r.clip][f"note_{metric}"] = r.note
    front = pareto_front(rows, "pa", by=("clip", "scheme"))
    out["fronts"] = front[["clip", "scheme", "value", "scale", "fps", "qp", "pa", "kbps"]] \
        .round(4).to_dict(orient="records")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "casva_fig11.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    plot(rows, front, args.out / "casva_fig11.png")
    print(json.dumps(out["clips"], indent=2))


def plot(rows: pd.DataFrame, front: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = list(dict.fromkeys(rows["clip"]))
    fig, axes = plt.subplots(1, len(clips), figsize=(5 * len(clips), 3.5), squeeze=False)
    for ax, clip in zip(axes[0], clips, strict=True):
        for scheme, colour in (("stac", "C0"), ("casva", "C1")):
            pts = rows[(rows["clip"] == clip) & (rows["scheme"] == scheme)]
            fr = front[(front["clip"] == clip) & (front["scheme"] == scheme)]
            ax.scatter(pts["kbps"], pts["pa"], s=10, color=colour, alpha=0.4)
            ax.plot(fr["kbps"], fr["pa"], "-o", color=colour, label=scheme, ms=3)
        ax.set_xscale("log")
        ax.set_xlabel("kbps")
        ax.set_ylabel("PA")
        ax.set_title(clip)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
