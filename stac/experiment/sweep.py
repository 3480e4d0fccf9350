"""`sweep(spec, out)`: run every configuration of a spec once, resumably, on a backend.

Backends (DESIGN.md "Scaling out"): ``local``, a process pool of `workers` processes
(forked from a forkserver that imported the simulator once, one torch thread each, reused
across runs), and ``ray``, one remote task per run
on a local Ray instance or an existing cluster (``address``). Both call the same
`runs.execute`, so the table is the same (apart from ``wall_s``). Runs already done in
`out` are skipped; `out/runs.csv` is rewritten with every run of the spec, in spec order.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd

from stac.experiment.runs import (
    METRICS,
    execute,
    full_config,
    is_done,
    limit_threads,
    read_row,
    run_id,
)
from stac.experiment.spec import SweepSpec, expand, load_spec, resolve

BACKENDS = ("local", "ray")
PRELOAD = "stac.experiment.preload"  # imported by every worker before its first run
RUNS_CSV = "runs.csv"
ENV_PASSED = ("STAC_CACHE", "STAC_DATA")  # environment a worker needs to see the same data


def plan(spec: str | Path | Mapping[str, Any] | SweepSpec,
         out: str | Path) -> list[dict[str, Any]]:
    """The tasks of a sweep in spec order: each with its run id, resolved options, the
    table columns as written in the spec, and the folder it writes into."""
    spec = load_spec(spec)
    keys = spec.keys()
    tasks, seen = [], set()
    env = {k: os.environ[k] for k in ENV_PASSED if k in os.environ}
    for params in expand(spec):
        resolved = resolve(spec, params)
        config, error = full_config(resolved)
        rid = run_id(config)
        if rid in seen:  # two grid tables may name the same run
            continue
        seen.add(rid)
        columns = {"scheme": params.get("scheme", config.get("scheme")),
                   **{k: params.get(k) for k in keys if k != "scheme"}}
        tasks.append({"run_id": rid, "params": resolved, "columns": columns,
                      "out": str(Path(out).resolve()), "env": env, "invalid": error})
    return tasks


def sweep(spec: str | Path | Mapping[str, Any] | SweepSpec, out: str | Path,
          backend: str = "local", workers: int | None = None, address: str | None = None,
          progress: bool = True) -> pd.DataFrame:
    """Run the spec's runs not yet done in `out`; return (and write to out/runs.csv) the
    table of all of them, one row per run in spec order. A failing run is a row with
    status ``failed`` and its error; the sweep goes on. One sweep at a time per `out`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    tasks = plan(spec, out)
    for stale in (out / "runs").glob(".tmp-*"):  # killed runs' partial outputs
        shutil.rmtree(stale, ignore_errors=True)
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for task in tasks:
        if task["invalid"] is not None:  # options that cannot even be built: no run at all
            rows[task["run_id"]] = {"run_id": task["run_id"], **task["columns"],
                                    "status": "failed", "error": task["invalid"]}
        elif is_done(out, task["run_id"]):
            rows[task["run_id"]] = read_row(out, task["run_id"])
        else:
            todo.append(task)
    bar = _bar(len(tasks), len(tasks) - len(todo), progress)
    try:
        runner = _local if backend == "local" else _ray
        for row in runner(todo, workers, address):
            _keep_traceback(out, row)
            rows[row["run_id"]] = row
            if bar is not None:
                bar.update(1)
                if row["status"] != "ok":
                    bar.write(f"run {row['run_id']} failed: {row['error']}")
            _write_table(out, tasks, rows)
    finally:
        if bar is not None:
            bar.close()
    return _write_table(out, tasks, rows)


def _keep_traceback(out: Path, row: dict[str, Any]) -> None:
    """A failed run's traceback goes to out/failed/<run_id>.log (removed once it succeeds)."""
    log = out / "failed" / f"{row['run_id']}.log"
    text = row.pop("traceback", None)
    if row["status"] == "ok":
        log.unlink(missing_ok=True)
    elif text:
        log.parent.mkdir(exist_ok=True)
        log.write_text(text)


def _bar(total: int, done: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="run", desc="sweep", dynamic_ncols=True)


def table(tasks: Sequence[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]]
          ) -> pd.DataFrame:
    """The runs table: run_id, status, error, scheme, the spec's keys, then the metrics;
    runs not finished (yet) are left out."""
    columns = ["run_id", "status", "error"]
    for task in tasks:
        columns += [k for k in task["columns"] if k not in columns]
    columns += [m for m in METRICS if m not in columns]
    records = [rows[t["run_id"]] for t in tasks if t["run_id"] in rows]
    return tidy(pd.DataFrame.from_records(records, columns=columns))


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """One spelling of a runs table in memory and read back from CSV: whole-number option
    columns with gaps (qp of jpeg runs) as nullable integers, no error as ''."""
    for column in df.columns:
        values = df[column].dropna()
        if column not in METRICS and df[column].dtype == float and len(values) \
                and (values == values.round()).all():
            df[column] = df[column].astype("Int64")
    if "error" in df.columns:
        df["error"] = df["error"].fillna("").astype(str)
    return df


def _write_table(out: Path, tasks, rows) -> pd.DataFrame:
    df = table(tasks, rows)
    tmp = out / f".{RUNS_CSV}.tmp"
    df.to_csv(tmp, index=False)
    tmp.replace(out / RUNS_CSV)
    return df


def _local(tasks: list[dict[str, Any]], workers: int | None, address: str | None
           ) -> Iterator[dict[str, Any]]:
    """Rows as runs finish, from a pool of spawned worker processes."""
    if address is not None:
        raise ValueError("--address is for the ray backend")
    if not tasks:
        return
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context(),
                             initializer=_worker_init) as pool:
        futures = [pool.submit(execute, task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()


def _context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fresh server process that has imported the simulator once
    (`stac.experiment.preload`), never from this process (it may hold torch threads);
    spawned where there is no forkserver."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([PRELOAD])
    return context


def _worker_init() -> None:
    """Everything imported and one thread, before the worker's first run (a no-op after
    the forkserver's preload)."""
    import importlib

    importlib.import_module(PRELOAD)
    limit_threads()


def _ray(tasks: list[dict[str, Any]], workers: int | None, address: str | None
         ) -> Iterator[dict[str, Any]]:
    """Rows as runs finish, one Ray task (one CPU) per run."""
    if not tasks:
        return
    try:
        import ray
    except ImportError:
        raise ImportError("the ray backend needs Ray: pip install 'stac-sim[ray]'") from None
    started = not ray.is_initialized()
    if started:
        setup = {"worker_process_setup_hook": f"{PRELOAD}.setup"}
        if address is not None:
            ray.init(address=address, log_to_driver=False, runtime_env=setup)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False,
                     log_to_driver=False, runtime_env=setup)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(execute)
        pending = [remote.remote(task) for task in tasks]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        if started:
            ray.shutdown()

