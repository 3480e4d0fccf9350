"""One run of a sweep: its id (a hash of the full configuration), its folder, its table row.

`execute` is what a worker (process pool or Ray task) calls. It writes the run's outputs
into a temporary folder beside the final one and renames it when everything, the row
included, is written: a run is done exactly when `DIR/runs/<run_id>/row.json` exists, so
a killed run never looks done and a resumed sweep runs it again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from stac.agents import EdgeAgent

ROW_FILE = "row.json"
METRICS = ("kbps", "pa", "miou", "key_pa", "key_miou", "delay_mean", "delay_p95",
           "result_age_mean", "result_age_s_mean", "frames", "keyframes", "delivered",
           "dropped", "bytes", "video_s", "wall_s")
HASH_EXCLUDED = ("out", "use_cache", "overwrite")  # where and how a run writes: same results

_MODELS: dict[str, Any] = {}  # trained models loaded in this worker, by spec


def canonical(value: Any, whole_floats_as_int: bool = False) -> Any:
    """A JSON-able form of an option value with one spelling per value (tuples as lists,
    NaN as None, mapping keys as sorted strings, dataclasses as dicts); for hashing, whole
    floats as ints too, so that ``duration = 1`` and ``duration = 1.0`` are the same run."""
    def again(v: Any) -> Any:
        return canonical(v, whole_floats_as_int)

    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, Mapping):
        return {str(k): again(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [again(v) for v in value]
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if whole_floats_as_int and value.is_integer() and abs(value) < 2**53:
            return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def full_config(params: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(every option after defaults, None) from `run_options`, or (the params as given, the
    error) when they are not valid options; `out` and `use_cache` left out."""
    from stac.sim.runner import run_options

    try:
        options = run_options({**params, "out": ""})
    except (ValueError, TypeError) as exc:
        return {k: canonical(v) for k, v in params.items()}, _error(exc)
    config = canonical(options.to_dict())
    return {k: v for k, v in config.items() if k not in HASH_EXCLUDED}, None


def run_id(config: Mapping[str, Any]) -> str:
    """``<scheme>-<12 hex>``: sha1 of the canonical JSON of the full configuration."""
    text = json.dumps(canonical(config, whole_floats_as_int=True), sort_keys=True,
                      separators=(",", ":"))
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    return f"{config.get('scheme', 'run')}-{digest}"


def run_dir(out: str | Path, rid: str) -> Path:
    """The folder of run `rid` in the sweep folder `out`."""
    return Path(out) / "runs" / rid


def is_done(out: str | Path, rid: str) -> bool:
    """Whether run `rid` finished: its folder holds row.json (written last, then renamed)."""
    return (run_dir(out, rid) / ROW_FILE).is_file()


def read_row(out: str | Path, rid: str) -> dict[str, Any]:
    """The table row a finished run left in its folder."""
    return json.loads((run_dir(out, rid) / ROW_FILE).read_text())


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def execute(task: Mapping[str, Any]) -> dict[str, Any]:
    """Run one task {run_id, params, columns, out, env}; return its row (status ``ok`` or
    ``failed`` with the error). Never raises for a failing run: the sweep goes on."""
    t0 = time.perf_counter()
    os.environ.update(task.get("env", {}))
    limit_threads()
    rid, out = task["run_id"], Path(task["out"])
    final = run_dir(out, rid)
    tmp = final.with_name(f".tmp-{rid}-{os.getpid()}")
    row = {"run_id": rid, **task["columns"]}
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        metrics = _simulate(task["params"], tmp)
        row.update(status="ok", error="", **metrics, wall_s=time.perf_counter() - t0)
        (tmp / ROW_FILE).write_text(json.dumps(canonical(row), indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)  # an incomplete folder of a killed run
        tmp.rename(final)
    except Exception as exc:  # noqa: BLE001 - recorded in the table; the sweep goes on
        shutil.rmtree(tmp, ignore_errors=True)
        row.update(status="failed", error=_error(exc), wall_s=time.perf_counter() - t0)
        row["traceback"] = traceback.format_exc()
    return row


def limit_threads() -> None:
    """One torch and one OpenCV thread per worker: the pool supplies the parallelism."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _simulate(params: Mapping[str, Any], tmp: Path) -> dict[str, Any]:
    """Run the simulation into `tmp`; the row's metrics from its summary and frames."""
    from stac.sim.runner import run, run_options

    options = run_options({**params, "out": str(tmp)})
    model = _model(options.model, options.seed)
    recorder = KeyframeRecorder()
    summary = run(options, model=model, prepare=recorder.attach)
    _fix_out(tmp / "summary.json", run_dir_of(tmp))
    key_pa, key_miou = recorder.accuracy(model, options)
    fs = summary["frame_stats"]
    video_s = summary["video_s"]
    age = fs["result_age_frames"]["mean"]
    return {
        "kbps": summary["bytes"] * 8 / 1000 / video_s if video_s else math.nan,
        "pa": _num(fs["pa"]["mean"]), "miou": _num(fs["miou"]["mean"]),
        "key_pa": key_pa, "key_miou": key_miou,
        "delay_mean": _num(fs["delay_s"]["mean"]), "delay_p95": _num(fs["delay_s"]["p95"]),
        "result_age_mean": _num(age),
        "result_age_s_mean": _num(age) / summary["source_fps"],
        "frames": summary["frames"], "keyframes": summary["keyframes"],
        "delivered": summary["delivered"], "dropped": summary["dropped"],
        "bytes": summary["bytes"], "video_s": video_s,
    }


def run_dir_of(tmp: Path) -> Path:
    """The final folder of a run being written into `tmp` (``.tmp-<id>-<pid>``)."""
    rid = tmp.name[len(".tmp-"):].rsplit("-", 1)[0]
    return tmp.with_name(rid)


def _fix_out(summary_path: Path, final: Path) -> None:
    """summary.json names the run's final folder, not the temporary one it was written in."""
    summary = json.loads(summary_path.read_text())
    summary.get("options", {})["out"] = str(final)
    summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _model(spec: str, seed: int):
    """The run's model: trained ones loaded once per worker; ``untrained:NAME`` built per run
    under the run's seed, exactly as `stac.sim.runner.run` would build it."""
    from edge.models.registry import UNTRAINED_PREFIX, resolve_model
    from stac.sim.runner import seed_everything

    if spec.startswith(UNTRAINED_PREFIX):
        seed_everything(seed)
        return resolve_model(spec)
    if spec not in _MODELS:
        _MODELS[spec] = resolve_model(spec)
    return _MODELS[spec]


class KeyframeRecorder:
    """Keeps the edge's segmentation of every keyframe of a run, to score the keyframes'
    own results (compression alone, before propagation) against the raw frames' output."""

    def __init__(self) -> None:
        self.results: dict[int, bytes] = {}

    def attach(self, scheme: Any) -> None:
        """`run(..., prepare=...)` hook: put a recording wrapper around the scheme's edge."""
        scheme.edge = _RecordingEdge(scheme.edge, self.results)

    def accuracy(self, model: Any, options: Any) -> tuple[float, float]:
        """Mean (PA, mIoU) of the keyframes' own results; NaN when none was delivered."""
        import numpy as np

        from stac.codec.labels import decode_labels
        from stac.frames import open_source
        from stac.groundtruth import GroundTruth

        if not self.results:
            return math.nan, math.nan
        source = open_source(options.video, size=options.size, fps=options.source_fps)
        gt = GroundTruth(model, source, options.model, use_cache=options.use_cache)
        last = max(self.results)
        pa, miou = [], []
        for frame in source:
            if frame.index > last:
                break
            if frame.index in self.results:
                a, m = gt.score(frame, decode_labels(self.results[frame.index]))
                pa.append(a)
                miou.append(m)
        return float(np.mean(pa)), float(np.mean(miou))


class _RecordingEdge(EdgeAgent):
    """Passes every call to the scheme's edge and keeps each keyframe's segmentation."""

    def __init__(self, inner: EdgeAgent, results: dict[int, bytes]) -> None:
        self.inner = inner
        self.results = results

    def on_keyframe(self, keyframe):
        out = self.inner.on_keyframe(keyframe)
        if out.feedback is not None:
            self.results[keyframe.index] = out.feedback.segmentation
        return out

    def on_second(self, *args, **kwargs):
        return self.inner.on_second(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # anything else a driver asks of the edge
        return getattr(self.__dict__["inner"], name)
