"""Adaptation experiments (issue 12; STAC Figs. 12, 13, 15c, 16) on the experiment library.

    python experiments/adaptation.py fig12 --tuner stac=nn:W.pt --tuner uniform=offline:P.csv
    python experiments/adaptation.py fig13 --tuner stac=nn:W.pt
    python experiments/adaptation.py fig15c --profiles profiles_all.csv
    python experiments/adaptation.py fig16 --tuner nn=nn:W.pt --tuner offline=offline:P.csv ...
    python experiments/adaptation.py generalisation --tuner own=offline:A.csv \\
        --tuner other=offline:B.csv

Every run is a run of one sweep folder (`--work`/sweep): resumable, and a run two figures
share (same options) is run once. The real traces are imported into `--work`/traces, scaled
by the pixel ratio of the stream to 2048x1040 (docs/traces.md) and cut into seeded segments
(`--trace-start`); the clip is looped forward-backward to the segments' length. Outputs
(JSON, CSV, PNG) go to `--out` (default experiments/figures/adaptation/<config>). `--config
small` is the mechanics-only configuration the slow test runs (96x64, 2 s segments, the
tiny tuner of tests/data/tuner_tiny). See docs/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from stac.experiment import open_run, plan, sweep
from stac.experiment.adaptation import (
    FAMILIES,
    RULES,
    Segment,
    adaptive_spec,
    attach_segments,
    best_fixed,
    binding_kbps,
    clip_fps,
    family_factor,
    floor_kbps,
    fps_curves,
    frames_table,
    import_family,
    looped_clip,
    pick_segments,
    pixel_factor,
    plot_bars,
    plot_family_distributions,
    plot_fps_curves,
    plot_trajectory,
    run_metrics,
    segments_table,
)
from stac.experiment.runs import is_done, read_row, run_dir
from stac.schemes import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tuner_tiny"


@dataclass(frozen=True)
class Config:
    """One configuration of the experiments (the stream, the segments, the fixed grid)."""

    video: str
    size: tuple[int, int]
    source_fps: float | None  # None: the clip's own rate
    seconds: float  # length of one evaluation segment
    per_family: int  # segments per trace family
    families: tuple[str, ...]
    trajectory_s: float  # Fig. 13's run
    fixed_B: tuple[float, ...]  # the fixed grid of the hindsight baseline
    fixed_fps: tuple[float, ...]
    start_B: float  # the adaptive runs' starting configuration
    start_fps: float
    model: str = DEFAULT_MODEL  # the project's default network (dabnet)
    estimator: str = "harmonic"
    seed: int = 0
    min_kbps: float = 10.0  # skip trace files whose scaled mean is below (dead links)
    rule: str = "paper"  # the trace scale: "pixel" ratio, or "paper" (pixel ratio x the
    # paper's family mean / this dataset's; docs/traces.md)


CONFIGS = {
    "small": Config(video="default", size=(96, 64), source_fps=10.0, seconds=2.0, per_family=1,
                    families=("lte", "fcc"), trajectory_s=4.0, fixed_B=(4.0,),
                    fixed_fps=(2.5, 5.0), start_B=4.0, start_fps=5.0, min_kbps=0.5,
                    rule="pixel"),
    "full": Config(video="default", size=(480, 204), source_fps=None, seconds=30.0,
                   per_family=2, families=("lte", "fcc", "3g", "wifi"), trajectory_s=100.0,
                   fixed_B=(1.3, 5.45, 19.0), fixed_fps=(2.0, 5.0, 10.0), start_B=4.0,
                   start_fps=5.0, estimator="robust"),  # B: dabnet's profiled grid
}
SMALL_TUNERS = {"stac": f"nn:{TINY / 'nn.pt'}"}


class Setup:
    """The shared preparation: traces, segments, the looped clip, the sweep folder."""

    def __init__(self, cfg: Config, work: Path, workers: int, progress: bool = False,
                 sweep_name: str = "sweep", collect: bool = False):
        self.cfg, self.work, self.workers, self.progress = cfg, work, workers, progress
        self.collect = collect
        self.factor = {fam: self.scale(fam) for fam in cfg.families}
        self.sweep_dir = work / sweep_name
        self.fps = clip_fps(cfg.video, cfg.source_fps)
        longest = max(cfg.seconds, cfg.trajectory_s)
        self.clip = looped_clip(cfg.video, cfg.size, longest, work / "clips", cfg.source_fps)
        self.base = {"video": str(self.clip), "source_fps": self.fps, "model": cfg.model,
                     "estimator": cfg.estimator, "seed": cfg.seed}

    def scale(self, family: str) -> float:
        """The trace scale of `family` under the configured rule."""
        traces = import_family(family, self.work / "traces") if self.cfg.rule == "paper" \
            else []
        return family_factor(family, self.cfg.size, traces, self.cfg.rule)

    def segments(self, seed_offset: int = 0) -> list[Segment]:
        """`per_family` seeded segments of every family (the evaluation traces)."""
        out = []
        for fam in self.cfg.families:  # a family's seed is its place in FAMILIES, so
            traces = import_family(fam, self.work / "traces")  # --families picks the same
            out += pick_segments(fam, traces, self.cfg.per_family, self.cfg.seconds,
                                 seed=self.cfg.seed + 1000 * seed_offset
                                 + list(FAMILIES).index(fam),
                                 min_kbps=self.cfg.min_kbps / self.factor[fam])
        return out

    def run(self, segments: list[Segment], labelled: dict[str, dict[str, Any]]
            ) -> pd.DataFrame:
        """Sweep every labelled run on every segment; the runs table with `label`, `family`,
        `segment` and `run_metrics` per run."""
        spec = adaptive_spec(segments, list(labelled.values()), self.base, self.factor)
        items = []
        for seg in segments:  # the run id of each (label, segment); two labels may share one
            for label, params in labelled.items():
                one = adaptive_spec([seg], [params], self.base, self.factor)
                items.append({"label": label, "run_id": plan(one, self.sweep_dir)[0]["run_id"]})
        if self.collect:  # only the runs already done, nothing started
            done = [t for t in plan(spec, self.sweep_dir) if is_done(self.sweep_dir, t["run_id"])]
            runs = pd.DataFrame([read_row(self.sweep_dir, t["run_id"]) for t in done]) \
                if done else pd.DataFrame(columns=["run_id", "status", "trace", "trace_start"])
        else:
            runs = sweep(spec, self.sweep_dir, workers=self.workers, progress=self.progress)
        runs = attach_segments(runs, segments)
        failed = runs[runs["status"] != "ok"]
        for _, r in failed.iterrows():
            print(f"FAILED {r['run_id']} ({r['segment']}): {r['error']}", file=sys.stderr)
        labels = pd.DataFrame(items)
        return labels.merge(runs[runs["status"] == "ok"], on="run_id")

    def metrics(self, runs: pd.DataFrame, binding: float, floor: float = math.nan
                ) -> pd.DataFrame:
        """`run_metrics` of each run beside its label, family and segment."""
        rows = []
        for r in runs.to_dict("records"):
            m = run_metrics(open_run(run_dir(self.sweep_dir, r["run_id"])), binding, floor)
            rows.append({"run_id": r["run_id"], "label": r["label"], "family": r["family"],
                         "segment": r["segment"], "scheme": r["scheme"],
                         "tuner": r.get("tuner"), **m})
        return pd.DataFrame(rows)


def parse_tuners(items: list[str]) -> dict[str, str]:
    """["stac=nn:W.pt", ...] -> {"stac": "nn:W.pt"}: a label (or scheme) and a tuner spec."""
    out = {}
    for item in items:
        key, sep, spec = item.partition("=")
        if not sep or not key or not spec:
            raise SystemExit(f"--tuner wants LABEL=SPEC (e.g. stac=nn:W.pt), got {item!r}")
        name, _, arg = spec.partition(":")
        out[key] = f"{name}:{Path(arg).resolve()}" if arg else spec
    return out


def parse_pair(text: str) -> tuple[float, float]:
    """"4:5" -> (4.0, 5.0): a fixed (B, fps)."""
    try:
        b, f = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected B:FPS, e.g. 4:5, got {text!r}") from None
    return b, f


def adaptive(cfg: Config, scheme: str, tuner: str) -> dict[str, Any]:
    """The run options of `scheme` adapting with `tuner` from the configured start."""
    knob = {"stac": {"B": cfg.start_B}}.get(scheme, {})
    return {"scheme": scheme, "tuner": tuner, "fps": cfg.start_fps, **knob}


def family_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of each number per family and label (and over all families)."""
    cols = ["pa", "miou", "kbps", "bandwidth_kbps", "overshoot_frac", "feasible_frac",
            "overshoot_feasible_frac", "dropped_key_frac",
            "binding_frac", "utilisation_binding", "delay_mean", "delay_p95", "age_mean",
            "age_p95", "estimate_error", "changes"]
    cols = [c for c in cols if c in table]
    per = table.groupby(["family", "label"], sort=False)[cols].mean().reset_index()
    every = table.groupby("label", sort=False)[cols].mean().reset_index()
    return pd.concat([per, every.assign(family="all")], ignore_index=True)


def save(out: Path, name: str, table: pd.DataFrame | None = None, fig=None,
         record: dict[str, Any] | None = None) -> None:
    """out/name.csv, out/name.png, out/name.json (whichever are given)."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    if table is not None:
        table.to_csv(out / f"{name}.csv", index=False, float_format="%.6g")
    if fig is not None:
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
    if record is not None:
        (out / f"{name}.json").write_text(json.dumps(_clean(record), indent=2) + "\n")


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _clean(v.item())
    return v


def profiles_of(tuner: str) -> str | None:
    """The profile CSV of an `offline:` tuner spec (None for others)."""
    name, _, arg = tuner.partition(":")
    return arg if name == "offline" else None


def binding_of(args, setup: Setup) -> float:
    """The link binds below the most expensive profiled configuration's mean bitrate."""
    source = args.profiles or profiles_of(args.tuners.get("stac", "")) or \
        str(TINY / "profiles.csv")
    return binding_kbps(source)


def floor_of(args) -> float:
    """Below the cheapest profiled configuration's mean bitrate every configuration
    overshoots (NaN without `--profiles`)."""
    return floor_kbps(args.profiles) if args.profiles else math.nan


def cmd_fig12(args, setup: Setup) -> None:
    """PA, delay and result age per trace family for stac and the adapting baselines, with
    the best fixed (B, fps) in hindsight per segment."""
    cfg = setup.cfg
    segments = setup.segments()
    labelled = {s: adaptive(cfg, s, args.tuners.get(s, "fixed")) for s in args.schemes}
    grid = [(b, f) for b in cfg.fixed_B for f in cfg.fixed_fps] if args.hindsight else []
    start = (cfg.start_B, cfg.start_fps)  # nearest the start first: the likeliest best
    grid = sorted(grid, key=lambda bf: (abs(math.log(bf[0] / start[0])) +
                                        abs(math.log(bf[1] / start[1])), bf))
    if args.fixed:  # the given (B, fps) pairs, in the given order
        grid = args.fixed
    for b, f in grid:
        labelled[f"fixed B{b:g} fps{f:g}"] = {"scheme": "stac", "B": b, "fps": f,
                                             "tuner": "fixed"}
    runs = setup.run(segments, labelled)
    table = setup.metrics(runs, binding_of(args, setup), floor_of(args))
    fixed = table[table["label"].str.startswith("fixed ")]
    adapt = table[~table["label"].str.startswith("fixed ")]
    summary = family_summary(adapt) if len(adapt) else pd.DataFrame()
    record: dict[str, Any] = {"config": asdict(cfg), "factor": setup.factor,
                              "pixel_factor": pixel_factor(cfg.size),
                              "binding_kbps": binding_of(args, setup),
                              "tuners": {s: labelled[s]["tuner"] for s in args.schemes},
                              "segments": segments_table(segments, setup.factor)
                              .to_dict("records"),
                              "summary": summary.to_dict("records")}
    if len(fixed):
        fixed = fixed.assign(B=fixed["B_mean"], fps=fixed["fps_mean"])
        best = best_fixed(fixed)
        best["family"] = best["segment"].str.split("/").str[0]
        record["best_fixed"] = best.to_dict("records")
        record["best_fixed_family_pa"] = best.groupby("family")["pa"].mean().to_dict()
        save(args.out, "fig12_best_fixed", best)
    save(args.out, "fig12_runs", table)
    save(args.out, "fig12_summary", summary, record=record)
    if len(adapt):
        save(args.out, "fig12_distributions", fig=plot_family_distributions(frames_table(
            runs[runs["label"].isin(args.schemes)], setup.sweep_dir, label="label")))


def cmd_fig13(args, setup: Setup) -> None:
    """A trajectory of `trajectory_s` seconds on one segment of the first family, for each
    scheme of `--trajectories` (stac by default), each with its own tuner (`--tuner`;
    auto, the scheme's own, for the baselines) on the same segment."""
    cfg = setup.cfg
    fam = args.family or cfg.families[0]
    setup.factor.setdefault(fam, setup.scale(fam))
    traces = import_family(fam, setup.work / "traces")
    seg = pick_segments(fam, traces, 1, cfg.trajectory_s, seed=cfg.seed + 77,
                        min_kbps=cfg.min_kbps / setup.factor[fam])[0]
    tuners = {s: args.tuners.get(s, SMALL_TUNERS["stac"] if s == "stac" else "auto")
              for s in args.trajectories}
    runs = setup.run([seg], {s: adaptive(cfg, s, t) for s, t in tuners.items()})
    for scheme, tuner in tuners.items():
        row = runs[runs["label"] == scheme].iloc[0]
        result = open_run(run_dir(setup.sweep_dir, row["run_id"]))
        m = run_metrics(result, binding_of(args, setup), floor_of(args))
        title = (f"{scheme} ({tuner.split(':')[0]}, {cfg.estimator}) on {seg.name} "
                 f"x{setup.factor[fam]:.4f}")
        name = "fig13_trajectory" if scheme == "stac" else f"fig13_trajectory_{scheme}"
        save(args.out, name, result.seconds, fig=plot_trajectory(result.seconds, title),
             record={"segment": asdict(seg), "clip": str(setup.clip), "scheme": scheme,
                     "tuner": tuner, "factor": setup.factor[fam], "rule": cfg.rule,
                     "metrics": m})


def cmd_fig15c(args, setup: Setup) -> None:
    """Accuracy-bitrate curves per fps from a profiles CSV (every row)."""
    source = args.profiles or str(TINY / "profiles.csv")
    curves = fps_curves(pd.read_csv(source))
    save(args.out, "fig15c_fps_curves", curves, fig=plot_fps_curves(curves),
         record={"profiles": source, "curves": curves.to_dict("records")})


def compare_tuners(args, setup: Setup, runs_name: str, name: str, **record) -> None:
    """`stac` with each labelled tuner (`--tuner LABEL=SPEC`) on the same segments: the runs
    table, the per-family summary and its bar plot."""
    runs = setup.run(setup.segments(), {label: adaptive(setup.cfg, "stac", spec)
                                        for label, spec in args.tuners.items()})
    table = setup.metrics(runs, binding_of(args, setup), floor_of(args))
    summary = family_summary(table)
    save(args.out, runs_name, table)
    save(args.out, name, summary, fig=plot_bars(table, hue="label"),
         record={**record, "tuners": args.tuners, "summary": summary.to_dict("records")})


def cmd_fig16(args, setup: Setup) -> None:
    """The tuner ablation: `stac` with each labelled tuner over the trace families."""
    compare_tuners(args, setup, "fig16_runs", "fig16_tuner_ablation")


def cmd_generalisation(args, setup: Setup) -> None:
    """The same segments with tuners built from the evaluated clip's own profiles and from
    the other clip's: the cost of tuning on another video."""
    compare_tuners(args, setup, "generalisation_runs", "generalisation", clip=setup.cfg.video)


COMMANDS = {"fig12": cmd_fig12, "fig13": cmd_fig13, "fig15c": cmd_fig15c, "fig16": cmd_fig16,
            "generalisation": cmd_generalisation}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("figure", choices=COMMANDS)
    p.add_argument("--config", choices=CONFIGS, default="full")
    p.add_argument("--video", default=None, help="clip (default: the config's, bikes)")
    p.add_argument("--size", default=None, help="WxH (default: the config's)")
    p.add_argument("--seconds", type=float, default=None, help="segment length")
    p.add_argument("--per-family", type=int, default=None, help="segments per family")
    p.add_argument("--families", nargs="+", default=None, help="lte fcc 3g wifi")
    p.add_argument("--trajectory-s", type=float, default=None, help="Fig. 13's length")
    p.add_argument("--estimator", default=None,
                   help="(default: the config's: full robust, small harmonic)")
    p.add_argument("--model", default=None,
                   help="the edge's network (default: the config's, the project's default "
                        f"{DEFAULT_MODEL}); give the tuners made for it")
    p.add_argument("--rule", choices=RULES, default=None,
                   help="trace scale: pixel ratio, or paper (pixel ratio x the paper's family "
                        "mean / this dataset's) (default: the config's)")
    p.add_argument("--schemes", nargs="*", default=["stac", "uniform", "grace", "h264"],
                   help="Fig. 12's schemes (default %(default)s)")
    p.add_argument("--tuner", dest="tuners", action="append", default=[],
                   metavar="LABEL=SPEC",
                   help="fig12/fig13: SCHEME=TUNER (default fixed); fig16/generalisation: "
                        "LABEL=TUNER for stac")
    p.add_argument("--no-hindsight", dest="hindsight", action="store_false",
                   help="fig12: skip the fixed (B, fps) grid")
    p.add_argument("--fixed", nargs="+", type=parse_pair, default=None, metavar="B:FPS",
                   help="fig12: the fixed grid to run, in this order (default: the config's "
                        "B x fps, nearest the start first)")
    p.add_argument("--family", default=None, help="fig13's trace family (default: first)")
    p.add_argument("--trajectories", nargs="+", default=["stac"], metavar="SCHEME",
                   help="fig13: the schemes whose trajectories to run on the same segment, "
                        "each with its --tuner (default: auto for the baselines) (default "
                        "%(default)s)")
    p.add_argument("--profiles", default=None,
                   help="profiles CSV (fig15c's curves; the binding threshold)")
    p.add_argument("--work", type=Path, default=None,
                   help="sweep folder, imported traces, looped clips (default out/adaptation/"
                        "CONFIG)")
    p.add_argument("--out", type=Path, default=None,
                   help="figures (default experiments/figures/adaptation/CONFIG)")
    p.add_argument("--sweep", default="sweep",
                   help="the sweep folder's name in --work (one sweep at a time per folder; "
                        "default %(default)s)")
    p.add_argument("--collect", action="store_true",
                   help="start no run: tabulate and plot the runs already done")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    cfg = CONFIGS[args.config]
    overrides = {k: getattr(args, k) for k in ("video", "seconds", "per_family",
                                                "trajectory_s", "estimator", "rule", "model")
                 if getattr(args, k) is not None}
    if args.size:
        overrides["size"] = tuple(int(v) for v in args.size.lower().split("x"))
    if args.families:
        overrides["families"] = tuple(args.families)
    cfg = replace(cfg, **overrides)
    args.tuners = parse_tuners(args.tuners)
    if args.config == "small" and args.figure in ("fig12", "fig13"):
        args.tuners = {**SMALL_TUNERS, **args.tuners}
    args.work = (args.work or ROOT / "out" / "adaptation" / args.config).resolve()
    args.out = args.out or ROOT / "experiments" / "figures" / "adaptation" / args.config
    t0 = time.perf_counter()
    setup = Setup(cfg, args.work, args.workers, args.progress, args.sweep, args.collect)
    COMMANDS[args.figure](args, setup)
    print(f"{args.figure}: outputs in {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    sys.exit(main())
