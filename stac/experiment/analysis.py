"""Analysis of a runs table: Pareto fronts, BD-rates between schemes, accuracy-bitrate plots.

The curve maths is `stac.metrics` (`rd_front`, `bd_rate`); these helpers select the runs
and group them. Only runs with status ``ok`` and a positive bitrate count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stac.metrics import bd_rate, rd_front


def _usable(runs: pd.DataFrame, metric: str, rate: str) -> pd.DataFrame:
    for column in (metric, rate):
        if column not in runs.columns:
            raise KeyError(f"runs table has no column {column!r} (columns: "
                           f"{', '.join(map(str, runs.columns))})")
    ok = runs["status"].eq("ok") if "status" in runs.columns else True
    return runs[ok & (runs[rate] > 0) & runs[metric].notna()]


def _groups(runs: pd.DataFrame, by: Sequence[str]):
    if not by:
        yield (), runs
        return
    for key, group in runs.groupby(list(by), sort=False, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), group


def pareto_front(runs: pd.DataFrame, metric: str = "pa", by: Sequence[str] = ("scheme",),
                 rate: str = "kbps") -> pd.DataFrame:
    """The runs no other run of their group beats (less or equal `rate`, higher `metric`),
    per group of `by`, sorted by rate within each group (`stac.metrics.rd_front`)."""
    parts = []
    for _, group in _groups(_usable(runs, metric, rate), by):
        r, q = rd_front(group[rate].to_numpy(), group[metric].to_numpy())
        picked = [group.index[(group[rate] == a) & (group[metric] == b)][0]
                  for a, b in zip(r, q, strict=True)]
        parts.append(group.loc[picked])
    return pd.concat(parts) if parts else runs.iloc[:0]


def bd_rate_between(runs: pd.DataFrame, a: str, b: str, metric: str = "pa",
                    rate: str = "kbps") -> float:
    """BD-rate of scheme `b` relative to scheme `a` at equal `metric` (fraction: -0.25 =
    b needs 25% fewer bits), each reduced to its Pareto front; ValueError if either has
    fewer than two front points or the curves do not overlap."""
    return bd_rate(*_front(runs, a, metric, rate), *_front(runs, b, metric, rate))


def _front(runs: pd.DataFrame, scheme: str, metric: str, rate: str):
    rows = _usable(runs[runs["scheme"] == scheme], metric, rate)
    r, q = rd_front(rows[rate].to_numpy(), rows[metric].to_numpy())
    if len(r) < 2:
        raise ValueError(f"scheme {scheme!r}: {len(r)} Pareto point(s) of {metric} against "
                         f"{rate}; BD-rate needs two")
    return r, q


def bd_rates(runs: pd.DataFrame, reference: str, metric: str = "pa", by: Sequence[str] = (),
             rate: str = "kbps") -> pd.DataFrame:
    """Per group of `by` and other scheme: the BD-rate of `reference` relative to it at
    equal `metric`, its saving (= -BD-rate), the metric range both Pareto fronts cover
    (lo, hi) and each front's own range; a pair that cannot be compared has NaN and a note
    saying why."""
    records: list[dict[str, Any]] = []
    for key, group in _groups(_usable(runs, metric, rate), by):
        schemes = list(dict.fromkeys(group["scheme"]))
        if reference not in schemes:
            continue
        for other in schemes:
            if other == reference:
                continue
            record = {**dict(zip(by, key, strict=True)), "scheme": other, "reference": reference,
                      "metric": metric, "bd_rate": math.nan, "saving": math.nan,
                      "lo": math.nan, "hi": math.nan, "ref_range": None, "other_range": None,
                      "note": ""}
            try:
                (_, q_ref), (_, q_oth) = (_front(group, s, metric, rate)
                                          for s in (reference, other))
                record.update(lo=float(max(q_ref.min(), q_oth.min())),
                              hi=float(min(q_ref.max(), q_oth.max())),
                              ref_range=(float(q_ref.min()), float(q_ref.max())),
                              other_range=(float(q_oth.min()), float(q_oth.max())))
                bd = bd_rate_between(group, other, reference, metric, rate)
            except ValueError as exc:
                record["note"] = str(exc)
            else:
                record.update(bd_rate=bd, saving=-bd)
            records.append(record)
    columns = [*by, "scheme", "reference", "metric", "bd_rate", "saving", "lo", "hi",
               "ref_range", "other_range", "note"]
    return pd.DataFrame.from_records(records, columns=columns)


def plot_accuracy_bitrate(runs: pd.DataFrame, metrics: Sequence[str] = ("pa", "miou"),
                          col: str | None = None, style: str | None = None,
                          rate: str = "kbps"):
    """Accuracy against bitrate (log scale), one line per scheme (line style per value of
    `style`, e.g. ``"fps"``), one row of panels per metric, one column per value of `col`
    (e.g. ``"clip"``). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    cols = list(dict.fromkeys(runs[col])) if col else [None]
    fig, axes = plt.subplots(len(metrics), len(cols), figsize=(5.5 * len(cols),
                             3.75 * len(metrics)), squeeze=False)
    schemes = list(dict.fromkeys(runs["scheme"]))
    colours = dict(zip(schemes, plt.get_cmap("tab10").colors, strict=False))
    styles = sorted(set(runs[style].dropna())) if style else [None]
    for i, metric in enumerate(metrics):
        data = _usable(runs, metric, rate)
        for j, c in enumerate(cols):
            ax = axes[i][j]
            panel = data if c is None else data[data[col] == c]
            for scheme in schemes:
                for s in styles:
                    pts = panel[panel["scheme"] == scheme]
                    if s is not None:
                        pts = pts[pts[style] == s]
                    if pts.empty:
                        continue
                    pts = pts.sort_values(rate)
                    label = scheme if s is None else f"{scheme} @{s:g} {style}" \
                        if isinstance(s, (int, float, np.number)) else f"{scheme} {s}"
                    ax.plot(pts[rate], pts[metric], marker="o", ms=4, color=colours[scheme],
                            ls=("-", "--", ":", "-.")[styles.index(s) % 4], label=label)
            ax.set_xscale("log")
            ax.set_xlabel(f"bitrate ({rate})")
            ax.set_ylabel(metric)
            if c is not None:
                ax.set_title(str(c))
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
