"""Keyframe-only studies of `stac-plus`'s allocation on CamVid stills (issue 16).

    python experiments/stac_plus_keyframe.py calibrate --split train --stills 12 \\
        --out experiments/figures/stac_plus
    python experiments/stac_plus_keyframe.py compare --split val --stills 12 \\
        --out experiments/figures/stac_plus [--calibration .../calibration.json]

Every still is resized to --size (480x360), coded as one intra keyframe with the shipped
model's tables (real encodes; the encoder's reconstruction is bit-exact with the decoder's),
with fresh gradients of the fake-label loss on the still itself (as the edge has for a
keyframe it just decoded). Per still: the worst-case increments dQ(r, l) and Eq. 2's size
estimates V(r, l) (`edge.allocation`), and the uniform encode at every level (its bytes,
real bits per region R(r, l), and the PA of the decoded frame's segmentation against the
raw still's).

`calibrate` fits the allocation's mixing charges from measured data (docs/stac.md,
"Calibrating the mixing charges"). Per still it encodes mixed level maps: the
Lagrangian allocation without mixing charges at the budgets of uniform levels 6-22, and
random two-level maps (base 8/14/20, +-2, +-4 or +-8 levels on 30% of the regions, as single
regions or as 3x3 blobs). The excess of a mixed frame over its regions' uniform-encode bits,
E(a) = bits(a) - (header and map bits of the uniform frame) - sum_r R(r, a_r),
is fitted (non-negative least squares, no intercept: a uniform map has E = 0) in three
forms: `pair`, beta x (4-neighbour pairs at different levels) + gamma x (regions off the
mode level); `diff`, delta x (sum over 4-neighbour pairs of the level difference) + gamma x
(off mode); `pair+diff`, all three; and `diff@lagrangian`, the `diff` form fitted on the
Lagrangian maps only. The exchange rate alpha between real bits and
Eq. 2's model bits is the slope of the uniform frames' bits on their sum of V (one
intercept per still). Then mix_bits = beta / alpha, diff_bits = delta / alpha and
map_bits = gamma / alpha, in the units of V that the allocation's objective uses; the
top-level charges are the `pair+diff` form's. Writes calibration.json and
calibration_points.csv.

`compare` is the issue's keyframe-only comparison of the allocation rules over a budget
grid B: Algorithm 1 (`closest`), the Lagrangian with real per-region bits R, the Lagrangian
with Eq. 2's V, and V with the mixing charges (the old guess, the calibrated per-pair
charges and the calibrated level-difference charges).
Each curve is (mean bytes, mean PA) over the stills per B (per level for uniform); BD-rate
of each rule against one uniform level (all 32 levels), over the whole common PA range and
at PA >= 0.95, and the noise floor: the BD-rate between two uniform sweeps (odd levels
against even levels). Writes keyframe_rows.csv (flushed per still: a rerun skips stills
done) and keyframe_rules.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import time
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from edge.allocation import allocate, level_differences, mixing_cost, region_size_estimates
from edge.gradients import dct_gradients
from edge.models.base import segment
from edge.selection import region_gradient_sums, select_levels, worst_case_increments
from edge.tables import tables_for
from stac.codec.encoder import Encoder
from stac.codec.transform import rgb_to_coeffs
from stac.data import data_root
from stac.frames import open_camvid
from stac.metrics import bd_rate, pixel_accuracy
from stac.schemes import DEFAULT_MODEL
from stac.sim.runner import resolve_model

OLD_MIXING = (24.0, 4.0)  # stac-plus's mix_bits, map_bits before calibration (a guess)
B_GRID = (0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3.0, 6.0, 12.0)
CAL_LEVELS = (6, 10, 14, 18, 22)  # Lagrangian maps at these uniform levels' budgets
HIGH_PA = 0.95
# the excess's features per form; `...@lagrangian` is fitted on the Lagrangian maps only
# (the maps the allocation makes), its R^2 still over all maps
FIT_FORMS = {"pair": ("pairs", "off_mode"), "diff": ("level_diff", "off_mode"),
             "pair+diff": ("pairs", "level_diff", "off_mode"),
             "diff@lagrangian": ("level_diff", "off_mode")}


def pick_stills(split: str, count: int, size: tuple[int, int]) -> list:
    """`count` stills spread evenly over the CamVid split (every len/count-th, in order)."""
    source = open_camvid(data_root() / "camvid", split, size=size)
    step = max(1, len(source.files) // count)
    source.files = source.files[::step][:count]
    source.labels = source.labels[::step][:count]
    return list(source)


class Still:
    """One still's keyframe quantities: gradients, dQ, V, uniform encodes at every level."""

    def __init__(self, rgb: np.ndarray, model, tables, pa: bool) -> None:
        self.rgb, self.model = rgb, model
        h, w = rgb.shape[:2]
        self.steps = tables.steps
        self.encoder = Encoder(w, h, tables.table_set(), embed_tables=False)
        grads, _ = dct_gradients(model, rgb)
        self.grads = grads.planes
        self.raw_labels = grads.labels
        self.dq = worst_case_increments(region_gradient_sums(self.grads, h, w), self.steps)
        self.V = region_size_estimates(rgb_to_coeffs(rgb), self.steps, h, w)
        levels = self.steps.shape[0]
        self.uniform_bits = np.zeros(levels)
        self.R = np.zeros(self.V.shape)
        self.uniform_pa = np.full(levels, np.nan)
        for level in range(levels):
            frame = self.encoder.encode(rgb, level, intra=True)
            self.uniform_bits[level] = 8 * frame.stats.n_bytes
            self.R[..., level] = frame.stats.region_bits
            if pa:
                self.uniform_pa[level] = self.pa(frame)

    def pa(self, frame) -> float:
        """PA of the decoded frame's segmentation against the raw still's."""
        labels, _ = segment(self.model, frame.reconstruction)
        return pixel_accuracy(labels, self.raw_labels, ignore_index=None)

    def encode(self, levels: np.ndarray):
        return self.encoder.encode(self.rgb, np.asarray(levels, np.int64), intra=True)

    def excess(self, levels: np.ndarray) -> tuple[float, float, float]:
        """(E, E in the regions' bits, E in header + map): bits above sum_r R(r, a_r)."""
        levels = np.asarray(levels, np.int64)
        frame = self.encode(levels)
        mode = int(np.bincount(levels.ravel()).argmax())
        overhead = self.uniform_bits[mode] - self.R[..., mode].sum()
        picked = np.take_along_axis(self.R, levels[..., None], axis=2).sum()
        regions = frame.stats.region_bits.sum() - picked
        total = 8 * frame.stats.n_bytes - overhead - picked
        return float(total), float(regions), float(total - regions)


def pairs_and_off_mode(levels: np.ndarray) -> tuple[int, int]:
    """(4-neighbour pairs at different levels, regions off the mode level)."""
    pairs = int(mixing_cost(levels, 1.0, 0.0))
    return pairs, int(mixing_cost(levels, 0.0, 1.0))


def random_map(shape: tuple[int, int], base: int, offset: int, share: float, blob: int,
               rng: np.random.Generator, levels: int) -> np.ndarray:
    """A two-level map: `share` of the regions (in blob x blob patches) at base + offset."""
    coarse = rng.random((-(-shape[0] // blob), -(-shape[1] // blob))) < share
    mask = np.kron(coarse, np.ones((blob, blob), bool))[:shape[0], :shape[1]]
    return np.clip(base + offset * mask, 0, levels - 1)


def calibrate(args, model, tables) -> dict:
    rows = []
    rng = np.random.default_rng(0)
    for n, frame in enumerate(pick_stills(args.split, args.stills, args.size)):
        t0 = time.perf_counter()
        still = Still(frame.rgb, model, tables, pa=False)
        L = still.steps.shape[0]
        maps = []
        for u in CAL_LEVELS:
            B = still.dq[..., u].sum()
            maps.append((f"lagrangian@{u}", allocate(still.V, still.dq, B).levels))
        for base in (8, 14, 20):
            for blob in (1, 3):
                for size in (2, 4, 8):
                    offset = size if rng.random() < 0.5 else -size
                    maps.append((f"random{blob}@{base}{offset:+d}",
                                 random_map(still.V.shape[:2], base, offset, 0.3, blob, rng, L)))
        for kind, levels in maps:
            pairs, off = pairs_and_off_mode(levels)
            if off == 0:
                continue
            e, e_regions, e_map = still.excess(levels)
            picked_v = np.take_along_axis(still.V, np.asarray(levels)[..., None], 2).sum()
            rows.append({"still": n, "kind": kind, "pairs": pairs, "off_mode": off,
                         "level_diff": level_differences(levels),
                         "excess_bits": e, "excess_region_bits": e_regions,
                         "excess_map_bits": e_map, "sum_R": float(
                             np.take_along_axis(still.R, np.asarray(levels)[..., None],
                                                2).sum()), "sum_V": float(picked_v)})
        for level in range(L):
            rows.append({"still": n, "kind": f"uniform@{level}", "pairs": 0, "off_mode": 0,
                         "level_diff": 0,
                         "excess_bits": 0.0, "excess_region_bits": 0.0, "excess_map_bits": 0.0,
                         "sum_R": float(still.uniform_bits[level]),
                         "sum_V": float(still.V[..., level].sum())})
        print(f"still {n}: {time.perf_counter() - t0:.1f} s", flush=True)
    with open(args.out / "calibration_points.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return fit_calibration(rows, args)


def fit_calibration(rows: list[dict], args) -> dict:
    """alpha (real bits per model bit), beta, gamma and the mixing charges in model bits."""
    uni = [r for r in rows if r["kind"].startswith("uniform")]
    mixed = [r for r in rows if not r["kind"].startswith("uniform")]
    stills = sorted({r["still"] for r in uni})
    # uniform frames: bits = alpha sum V + c_still (one intercept per still)
    X = np.array([[r["sum_V"]] + [float(r["still"] == s) for s in stills] for r in uni])
    y = np.array([r["sum_R"] for r in uni])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    alpha = float(coef[0])
    r2_alpha = 1 - np.sum((y - X @ coef) ** 2) / np.sum((y - y.mean()) ** 2)
    e = np.array([r["excess_bits"] for r in mixed])
    forms = {}
    lagrangian = np.array([r["kind"].startswith("lagrangian") for r in mixed])
    for form, keys in FIT_FORMS.items():
        A = np.array([[r[k] for k in keys] for r in mixed], float)
        fit_rows = lagrangian if form.endswith("@lagrangian") else slice(None)
        coef, _ = nnls(A[fit_rows], e[fit_rows])
        fit = dict(zip(keys, coef, strict=True))
        pred = A @ coef
        forms[form] = {
            "beta_real_bits_per_pair": float(fit.get("pairs", 0.0)),
            "delta_real_bits_per_level_of_difference": float(fit.get("level_diff", 0.0)),
            "gamma_real_bits_per_off_mode_region": float(fit.get("off_mode", 0.0)),
            "excess_fit_r2": float(1 - np.sum((e - pred) ** 2) / np.sum((e - e.mean()) ** 2)),
            "r2_by_map_family": _r2_by_family(mixed, e, pred),
            "mix_bits": float(fit.get("pairs", 0.0) / alpha),
            "diff_bits": float(fit.get("level_diff", 0.0) / alpha),
            "map_bits": float(fit.get("off_mode", 0.0) / alpha)}
    share = [r["excess_bits"] / r["sum_R"] for r in mixed]
    kinds: dict[str, list] = {}
    for r in mixed:  # lagrangian@6, random1@8, ... (the random maps' offset dropped)
        kinds.setdefault(re.sub(r"[+-]\d+$", "", r["kind"]), []).append(r)
    return {"split": args.split, "stills": len(stills), "size": list(args.size),
            "model": args.model, "mixed_maps": len(mixed),
            "alpha_real_bits_per_model_bit": alpha, "alpha_r2": float(r2_alpha),
            "forms": forms,
            "excess_share_of_sum_R": {"median": float(np.median(share)),
                                      "p10": float(np.percentile(share, 10)),
                                      "p90": float(np.percentile(share, 90))},
            "mean_excess_region_bits_per_pair": float(
                np.sum([r["excess_region_bits"] for r in mixed]) /
                max(1, np.sum([r["pairs"] for r in mixed]))),
            "mean_excess_map_bits_per_off_mode_region": float(
                np.sum([r["excess_map_bits"] for r in mixed]) /
                max(1, np.sum([r["off_mode"] for r in mixed]))),
            "median_by_map_kind": {k: {
                "pairs": float(np.median([r["pairs"] for r in v])),
                "off_mode": float(np.median([r["off_mode"] for r in v])),
                "level_diff": float(np.median([r["level_diff"] for r in v])),
                "excess_bits_per_pair": float(np.median([r["excess_bits"] / r["pairs"]
                                                         for r in v])),
                "excess_bits_per_level_of_difference": float(np.median(
                    [r["excess_bits"] / r["level_diff"] for r in v])),
                "excess_share_of_sum_R": float(np.median([r["excess_bits"] / r["sum_R"]
                                                          for r in v]))}
                for k, v in sorted(kinds.items())},
            **{k: forms["pair+diff"][k] for k in ("mix_bits", "diff_bits", "map_bits")},
            "load": os.getloadavg()}


def _r2_by_family(mixed: list[dict], e: np.ndarray, pred: np.ndarray) -> dict:
    """R^2 of a fit within each family of maps (lagrangian, random1, random3)."""
    out = {}
    for family in ("lagrangian", "random1", "random3"):
        pick = np.array([r["kind"].startswith(family) for r in mixed])
        if pick.sum() > 1:
            y = e[pick]
            out[family] = float(1 - np.sum((y - pred[pick]) ** 2) / np.sum((y - y.mean()) ** 2))
    return out


def mixing_rules(calibration: Path | None) -> dict[str, tuple[float, float, float]]:
    """(mix_bits, map_bits, diff_bits) per mixing rule: the old guess, and with a calibration
    its per-pair form (`calibrated`) and level-difference forms (`diff`, `pair+diff`;
    a form with the same charges as an earlier one is left out)."""
    rules = {"lagrangian_eq2_mix_old": (*OLD_MIXING, 0.0)}
    if calibration is None:
        return rules
    forms = json.loads(Path(calibration).read_text())["forms"]
    for name, form in (("lagrangian_eq2_mix_calibrated", "pair"),
                       ("lagrangian_eq2_mix_diff", "diff"),
                       ("lagrangian_eq2_mix_pair_diff", "pair+diff"),
                       ("lagrangian_eq2_mix_lagrangian_fit", "diff@lagrangian")):
        charges = tuple(forms[form][k] for k in ("mix_bits", "map_bits", "diff_bits"))
        if charges not in rules.values():
            rules[name] = charges
    return rules


def compare(args, model, tables) -> dict:
    mixing = mixing_rules(args.calibration)
    rules = {
        "closest": None,  # Algorithm 1
        "lagrangian_real": ("R", 0.0, 0.0, 0.0),
        "lagrangian_eq2": ("V", 0.0, 0.0, 0.0),
        **{name: ("V", *charges) for name, charges in mixing.items()},
    }
    path = args.out / "keyframe_rows.csv"
    done = set()
    if path.is_file():
        with open(path) as f:
            done = {int(r["still"]) for r in csv.DictReader(f)}
    fields = ["still", "rule", "value", "bytes", "pa"]
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        for n, frame in enumerate(pick_stills(args.split, args.stills, args.size)):
            if n in done:
                continue
            t0 = time.perf_counter()
            still = Still(frame.rgb, model, tables, pa=True)
            h, wd = frame.rgb.shape[:2]
            out = [{"still": n, "rule": "uniform", "value": level,
                    "bytes": still.uniform_bits[level] / 8, "pa": still.uniform_pa[level]}
                   for level in range(still.steps.shape[0])]
            for B in B_GRID:
                for rule, how in rules.items():
                    if how is None:
                        levels = select_levels(still.grads, still.steps, B, h, wd)
                    else:
                        size = still.R if how[0] == "R" else still.V
                        levels = allocate(size, still.dq, B, *how[1:]).levels
                    coded = still.encode(levels)
                    out.append({"still": n, "rule": rule, "value": B,
                                "bytes": coded.stats.n_bytes, "pa": still.pa(coded)})
            w.writerows(out)
            f.flush()
            print(f"still {n}: {time.perf_counter() - t0:.1f} s", flush=True)
    return summarise_rules(path, mixing)


def summarise_rules(path: Path, mixing: dict[str, tuple[float, float, float]]) -> dict:
    """Mean curves over the stills and BD-rates against uniform (whole range, PA >= 0.95)."""
    import pandas as pd

    rows = pd.read_csv(path)
    curves = rows.groupby(["rule", "value"])[["bytes", "pa"]].mean().reset_index()
    uni = curves[curves["rule"] == "uniform"]

    def bd(rule_curve, ref, low=None) -> float | None:
        try:
            return bd_rate(ref["bytes"], ref["pa"], rule_curve["bytes"], rule_curve["pa"],
                           low=low)
        except ValueError:  # no overlap in the band
            return None

    out = {"stills": int(rows["still"].nunique()),
           "mixing_charges_mix_map_diff": {k: list(v) for k, v in mixing.items()},
           "bd_rate_vs_uniform": {}}
    for rule, c in curves.groupby("rule"):
        if rule == "uniform":
            continue
        c = c.drop_duplicates("pa")
        out["bd_rate_vs_uniform"][rule] = {"whole": bd(c, uni), "pa_ge_0.90": bd(c, uni, 0.9),
                                           "pa_ge_0.95": bd(c, uni, HIGH_PA),
                                           "pa_range": [float(c["pa"].min()),
                                                        float(c["pa"].max())]}
    odd, even = uni[uni["value"] % 2 == 1], uni[uni["value"] % 2 == 0]
    out["noise_floor_odd_vs_even_levels"] = {"whole": bd(odd, even),
                                             "pa_ge_0.90": bd(odd, even, 0.9),
                                             "pa_ge_0.95": bd(odd, even, HIGH_PA)}
    out["curves"] = {rule: c[["value", "bytes", "pa"]].round(5).values.tolist()
                     for rule, c in curves.groupby("rule")}
    out["load"] = os.getloadavg()
    plot_rules(curves, path.with_name("keyframe_rules.png"))
    return out


def plot_rules(curves, path: Path) -> None:
    """Mean PA against mean bytes per keyframe, one curve per rule (uniform: per level)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for rule, c in curves.groupby("rule"):
        c = c.sort_values("bytes")
        ax.plot(c["bytes"], c["pa"], marker="o", ms=3, label=rule)
    ax.set_xscale("log")
    ax.set_ylim(0.85, 1.0)
    ax.set_xlabel("bytes per keyframe (mean over stills)")
    ax.set_ylabel("PA vs raw still (mean)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("calibrate", "compare", "summary"))
    p.add_argument("--split", default=None, help="CamVid split (calibrate: train, compare: val)")
    p.add_argument("--stills", type=int, default=12)
    p.add_argument("--size", type=lambda v: tuple(int(x) for x in v.split("x")),
                   default=(480, 360))
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--calibration", type=Path, default=None,
                   help="compare: calibration.json of `calibrate` (else the old defaults)")
    p.add_argument("--out", type=Path, default=Path("experiments/figures/stac_plus"))
    p.add_argument("--refit", action="store_true",
                   help="calibrate: fit again from OUT/calibration_points.csv, no encodes")
    args = p.parse_args()
    args.split = args.split or ("train" if args.mode == "calibrate" else "val")
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    model = resolve_model(args.model)
    tables = tables_for(model)
    if args.mode == "calibrate" and args.refit:  # the fit again, from the saved points
        with open(args.out / "calibration_points.csv") as f:
            rows = [{k: v if k == "kind" else float(v) for k, v in r.items()}
                    for r in csv.DictReader(f)]
        result = fit_calibration(rows, args)
        name = "calibration.json"
    elif args.mode == "calibrate":
        result = calibrate(args, model, tables)
        name = "calibration.json"
    elif args.mode == "summary":  # the comparison's summary from the stills done so far
        result = summarise_rules(args.out / "keyframe_rows.csv", mixing_rules(args.calibration))
        name = "keyframe_rules.json"
    else:
        result = compare(args, model, tables)
        name = "keyframe_rules.json"
    (args.out / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "curves"}, indent=2))


if __name__ == "__main__":
    main()
