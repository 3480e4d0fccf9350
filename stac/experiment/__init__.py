"""The experiment library: sweeps of simulated runs, their results, and their analysis.

    from stac.experiment import sweep, load_runs, load_frames, bd_rates, plot_accuracy_bitrate
    runs = sweep("spec.toml", "out/sweep", backend="local", workers=2)

See docs/experiments.md for the spec format, the results folder and the backends.
"""

from stac.experiment.analysis import (
    bd_rate_between,
    bd_rates,
    pareto_front,
    plot_accuracy_bitrate,
)
from stac.experiment.results import (
    ResultsError,
    RunResult,
    load_frames,
    load_run,
    load_runs,
    load_seconds,
    open_run,
)
from stac.experiment.runs import full_config, is_done, run_dir, run_id
from stac.experiment.spec import SpecError, SweepSpec, expand, load_spec
from stac.experiment.sweep import BACKENDS, plan, sweep

__all__ = [
    "BACKENDS", "ResultsError", "RunResult", "SpecError", "SweepSpec", "bd_rate_between",
    "bd_rates", "expand", "full_config", "is_done", "load_frames", "load_run", "load_runs",
    "load_seconds", "load_spec", "open_run", "pareto_front", "plan", "plot_accuracy_bitrate",
    "run_dir", "run_id", "sweep",
]
