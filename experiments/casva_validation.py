"""CASVA's learned policy in the real simulator on held-out traces (issue 17).

    python experiments/casva_validation.py --out out/casva_val [--policy P.pt]
        [--tables T.csv] [--per-family 1] [--model dabnet] [--workers 2]

For each trace family, the first `--per-family` held-out traces of the policy's card
(`traces_val`), a window of the clip's length at a seeded offset, scaled by the pixel
ratio (`edge.casva_env.TRACE_SCALE`) and written as a trace CSV; on each clip (480-pixel
width) two runs on the experiment library (a resumable sweep): `casva` with the learned
policy (`--tuner casva-rl:POLICY`, the realistic `harmonic` estimator) and `casva` at the
best single fixed (scale, fps, QP) in hindsight for that window, i.e. the grid cell with
the highest reward in the table-replay environment over the same window. Prints JSON
(also OUT/validation.json): per run, PA, mIoU, seconds with bitrate above 1.05 x
bandwidth, dropped keyframes, and the configurations the policy used.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from edge.casva_env import (
    TRACE_SCALE,
    WINDOW,
    CasvaEnv,
    SecondTrace,
    load_families,
    read_tables,
)
from edge.casva_policy import SHIPPED, CasvaPolicy
from stac.commands.casva import CLIPS
from stac.data import data_root
from stac.experiment import sweep
from stac.schemes import DEFAULT_MODEL
from stac.traces import Trace, save_trace

CLIP_S = {"bikes": 10, "solidWhiteRight": 8}  # whole seconds of each clip


def windows(policy: CasvaPolicy, per_family: int, seed: int) -> list[tuple[str, str, np.ndarray]]:
    """(family, trace name, per-second kbps from WINDOW s before the clip to its end)."""
    held = set(policy.card["traces_val"])
    traces = [t for t in load_families(data_root() / "traces") if f"{t.family}/{t.name}" in held]
    rng = np.random.default_rng(seed)
    out = []
    for family in dict.fromkeys(t.family for t in traces):
        for t in [t for t in traces if t.family == family][:per_family]:
            n = WINDOW + max(CLIP_S.values())
            s = int(rng.integers(len(t.kbps) - n + 1))
            out.append((family, t.name, t.kbps[s:s + n]))
    return out


def hindsight_cell(tables, video: int, kbps: np.ndarray, seconds: int) -> int:
    """The grid cell with the highest mean reward over the window (table replay)."""
    env = CasvaEnv(tables, [SecondTrace("w", "w", kbps)], 1, seconds, np.random.default_rng(0))
    best, best_r = 0, -np.inf
    for cell in range(tables.actions):
        env.reset(kbps[None, :WINDOW + seconds], np.array([video]), np.array([0]))
        a = np.array([tables.unravel(cell)])
        total = sum(float(env.step(a)[1][0]) for _ in range(seconds))
        if total > best_r:
            best, best_r = cell, total
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out") / "casva_val")
    p.add_argument("--policy", type=Path, default=SHIPPED)
    p.add_argument("--tables", type=Path, default=SHIPPED.parent / "casva_tables.csv")
    p.add_argument("--per-family", type=int, default=1)
    p.add_argument("--clips", default=",".join(CLIPS), help="comma list of the clips")
    p.add_argument("--families", default=None, help="comma list (default: every family)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="the edge model (that of the tables; default %(default)s)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    policy = CasvaPolicy.load(args.policy)
    tables = read_tables(args.tables)
    grids, meta = [], {}
    for family, name, kbps in windows(policy, args.per_family, args.seed):
        if args.families and family not in args.families.split(","):
            continue
        path = (args.out / f"{family}_{name}.csv").resolve()
        clip_kbps = kbps[WINDOW:]
        save_trace(Trace(np.arange(len(clip_kbps), dtype=float), clip_kbps, name=name,
                         end_s=float(len(clip_kbps))), path,
                   comment=f"{family}/{name} x {TRACE_SCALE:.4f} (pixel ratio), a window")
        for clip in args.clips.split(","):
            video, size = CLIPS[clip]
            video = video.format(data=data_root())
            v = tables.videos.index(clip)  # the tables name the clips as CLIPS does
            cell = tables.knobs(hindsight_cell(tables, v, kbps, CLIP_S[clip]))
            base = {"video": video, "size": size, "scheme": "casva", "trace": str(path)}
            grids.append({**base, "tuner": f"casva-rl:{args.policy.resolve()}",
                          "estimator": "harmonic"})
            grids.append({**base, "tuner": "fixed", **{k: [v_] for k, v_ in cell.items()}})
            meta[(str(path), video)] = {"family": family, "trace": name, "clip": clip,
                                        "fixed": cell}
    spec = {"base": {"model": args.model}, "grid": grids}
    runs = sweep(spec, args.out / "sweep", workers=args.workers)
    rows = []
    for r in runs.itertuples():
        if r.status != "ok":
            print(f"run {r.run_id} failed: {r.error}")
            continue
        d = args.out / "sweep" / "runs" / r.run_id
        summary = json.loads((d / "summary.json").read_text())
        seconds = pd.read_csv(d / "seconds.csv")
        m = meta[(r.trace, r.video)]
        learned = isinstance(getattr(r, "tuner", None), str) and r.tuner.startswith("casva-rl")
        rows.append({**{k: m[k] for k in ("family", "trace", "clip")},
                     "who": "learned" if learned else "best_fixed",
                     "config": None if learned else m["fixed"],
                     "pa": summary["frame_stats"]["pa"]["mean"],
                     "miou": summary["frame_stats"]["miou"]["mean"],
                     "over_s": summary["overshoot_seconds"]["count"],
                     "dropped": summary["dropped"], "kbps": float(r.kbps),
                     "configs_used": int(seconds[["scale", "fps", "qp"]].drop_duplicates()
                                         .shape[0])})
    df = pd.DataFrame(rows)
    mean = df.groupby("who")[["pa", "miou", "over_s", "dropped", "kbps"]].mean().round(4)
    result = {"runs": rows, "mean": mean.to_dict(orient="index"),
              "policy": str(args.policy), "machine": {"load": os.getloadavg()}}
    (args.out / "validation.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
