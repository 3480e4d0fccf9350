"""Runs whose CSVs were saved from main before the scheme-contract and speed refactors.

`python tests/reference/runs.py` rewrites the saved CSVs in
`tests/reference/outputs/<name>/`; `tests/test_reference_outputs.py` re-runs each and compares the
CSVs byte for byte. Only regenerate them when a change is meant to change outputs, and say
so in the commit.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUTS = HERE / "outputs"
REPO = HERE.parent.parent

#: name -> `stac-sim run` options (the default clip at a quarter of its size, shipped model,
#: tuner fixed: the configuration of each run never changes but by its schedule).
#: Scheme parameters use their `stac-sim run` names.
RUNS: dict[str, dict] = {
    "h264": dict(scheme="h264", qp=30, fps=5.0, duration=1.6),
    "h264_schedule": dict(scheme="h264", qp=34, fps=5.0, duration=2.4, schedule={1: 10.0}),
    "jpeg": dict(scheme="jpeg", quality=50, fps=5.0, duration=1.6),
    "stac": dict(scheme="stac", B=4.0, fps=5.0, duration=1.6),
    "stac_narrow": dict(scheme="stac", B=2.0, fps=10.0, duration=1.6, trace="narrow"),
    "uniform": dict(scheme="uniform", level=14, fps=5.0, duration=1.6),
    "grace": dict(scheme="grace", level=14, fps=5.0, duration=1.6),
}
SIZE = (160, 68)
MODEL = "bisenet"
#: a trace that binds at this size: 120 kbps, an outage, then 60 kbps
NARROW_TRACE = "time_s,bandwidth_kbps\n0,120\n0.5,0\n0.8,60\n"


def trace_path(name: str, tmp: Path) -> Path:
    """The trace file of a reference run (`narrow` is written into `tmp`)."""
    if name == "narrow":
        path = tmp / "narrow.csv"
        path.write_text("# end_s: 10\n" + NARROW_TRACE)
        return path
    return REPO / "traces" / "lte.csv"


def run_reference(name: str, out: Path, tmp: Path) -> Path:
    """Run reference `name` into `out`; returns `out`."""
    from stac.sim.runner import run, run_options

    params = dict(RUNS[name])
    trace = trace_path(params.pop("trace", "lte"), tmp)
    options = run_options(dict(params, trace=str(trace), out=str(out), size=SIZE,
                               model=MODEL, use_cache=False, seed=0, tuner="fixed"))
    run(options)
    return out


if __name__ == "__main__":
    import tempfile

    import torch

    torch.set_num_threads(1)
    for name in RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            run_reference(name, out, Path(tmp))
            dest = OUTPUTS / name
            dest.mkdir(exist_ok=True)
            for csv in ("frames.csv", "seconds.csv"):
                (dest / csv).write_bytes((out / csv).read_bytes())
            print(name, "saved")
