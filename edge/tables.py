"""Offline multi-level quantisation tables from average DCT gradients (STAC §IV-A).

(i) g_n: the mean |dQ/ds| per frequency bin n and colour component over all blocks of
sample frames; (ii) L levels of bounds B_l, log-spaced from near-lossless to very coarse;
q_n^l = 2 B_l / (M |g_n|), M the number of DCT coefficients of a frame (Table I: M counts
pixels / DCT coefficients), clipped to a valid step range. Level 0 is the finest.
A table file is NAME.npz (steps, bounds, mean_grad) plus NAME.json (metadata).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.gradients import dct_gradients
from edge.models.base import StreamingSegmenter
from stac.codec.quant import TableSet

TABLE_DIR = Path(__file__).resolve().parent / "tables"  # shipped tables: edge/tables/MODEL.npz


class TableFileError(ValueError):
    """A table file that is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class TableSpec:
    """How B_l spans the levels: the geometric mean step of the finest and coarsest table.

    B_1 is set so that the geometric mean of q_n^1 over the 48 bins is `q_fine` (near
    lossless for 8-bit planes); B_L so that it is `q_coarse` (very coarse). Steps are then
    clipped to [`q_min`, `q_max`].
    """

    levels: int = 32
    q_fine: float = 1.0
    q_coarse: float = 256.0
    q_min: float = 0.5
    q_max: float = 2048.0

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= 255:
            raise ValueError(f"levels must be in [1, 255], got {self.levels}")
        if not (0 < self.q_fine <= self.q_coarse and 0 < self.q_min <= self.q_max):
            raise ValueError("need 0 < q_fine <= q_coarse and 0 < q_min <= q_max, got "
                             f"{self.q_fine}, {self.q_coarse}, {self.q_min}, {self.q_max}")


@dataclass
class GradientTables:
    """A table set with what produced it: steps (L, 3, 16), bounds B_l (L,), mean |g| (3, 16)."""

    steps: np.ndarray
    bounds: np.ndarray
    mean_grad: np.ndarray
    coefficients: int  # M: DCT coefficients per frame of the sample frames
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> int:
        return int(self.steps.shape[0])

    def table_set(self) -> TableSet:
        """The codec's table set (steps snapped to what travels in the bitstream)."""
        return TableSet(self.steps)


class GradientAverager:
    """Running mean of |g| per (component, frequency) over every block of sample frames."""

    def __init__(self) -> None:
        self._sum = np.zeros((3, 16))
        self._count = np.zeros(3)
        self.frames = 0
        self.coefficients = 0

    def add(self, grads: Iterable[np.ndarray]) -> None:
        """Add the (Y, Cb, Cr) gradient planes (nby, nbx, 16) of one frame."""
        grads = list(grads)
        if len(grads) != 3 or any(np.ndim(g) != 3 or np.shape(g)[2] != 16 for g in grads):
            raise ValueError("expected Y, Cb, Cr gradient planes shaped (nby, nbx, 16)")
        for c, g in enumerate(grads):
            self._sum[c] += np.abs(g).reshape(-1, 16).sum(axis=0)
            self._count[c] += g.shape[0] * g.shape[1]
        self.frames += 1
        self.coefficients = sum(int(np.size(g)) for g in grads)

    def mean(self) -> np.ndarray:
        """(3, 16) mean |g_n| per component and frequency (§IV-A step (i))."""
        if self.frames == 0:
            raise ValueError("no frames added")
        return self._sum / self._count[:, None]


def average_gradients(model: StreamingSegmenter, frames: Iterable[np.ndarray]
                      ) -> GradientAverager:
    """Mean |g| of the fake-label loss (§IV-B) over sample RGB frames, each an independent
    still (the model starts from its initial state)."""
    averager = GradientAverager()
    for frame in frames:
        grads, _ = dct_gradients(model, frame)
        averager.add(grads.planes)
    if averager.frames == 0:
        raise ValueError("no sample frames")
    return averager


def build_tables(mean_grad: np.ndarray, coefficients: int,
                 spec: TableSpec | None = None) -> GradientTables:
    """L tables q_n^l = 2 B_l / (M |g_n|) over log-spaced B_l (§IV-A step (ii))."""
    spec = spec or TableSpec()
    g = np.asarray(mean_grad, np.float64)
    if g.shape != (3, 16) or not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ValueError(f"mean gradients must be finite, positive and (3, 16), got {g.shape}")
    if coefficients < 1:
        raise ValueError(f"coefficients (M) must be >= 1, got {coefficients}")
    unit = 2.0 / (coefficients * g)  # q_n per unit of B
    gmean = float(np.exp(np.log(unit).mean()))
    bounds = np.geomspace(spec.q_fine / gmean, spec.q_coarse / gmean, spec.levels)
    steps = np.clip(bounds[:, None, None] * unit[None], spec.q_min, spec.q_max)
    meta = {"spec": asdict(spec)}
    return GradientTables(steps=steps, bounds=bounds, mean_grad=g, coefficients=int(coefficients),
                          meta=meta)


def save_tables(tables: GradientTables, path: str | Path) -> Path:
    """Write PATH.npz and PATH.json (metadata); returns the npz path."""
    path = Path(path).with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, steps=tables.steps, bounds=tables.bounds, mean_grad=tables.mean_grad,
             coefficients=np.int64(tables.coefficients))
    meta = dict(tables.meta, levels=tables.levels, coefficients=tables.coefficients,
                bounds=tables.bounds.tolist())
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def load_tables(path: str | Path) -> GradientTables:
    """Read a table file written by `save_tables` (NAME.npz beside NAME.json); a bare model
    name reads the shipped `edge/tables/NAME.npz`."""
    path = Path(path)
    if not path.suffix and path.parent == Path("."):
        path = TABLE_DIR / path.name
    path = path.with_suffix(".npz")
    if not path.exists():
        raise TableFileError(f"{path}: no such table file")
    try:
        with np.load(path) as data:
            steps, bounds = data["steps"], data["bounds"]
            mean_grad, coefficients = data["mean_grad"], int(data["coefficients"])
    except (OSError, KeyError, ValueError) as exc:
        raise TableFileError(f"{path}: not a STAC table file ({exc})") from exc
    if steps.ndim != 3 or steps.shape[1:] != (3, 16) or bounds.shape != (steps.shape[0],):
        raise TableFileError(f"{path}: steps {steps.shape} and bounds {bounds.shape} disagree")
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    except json.JSONDecodeError as exc:
        raise TableFileError(f"{meta_path}: invalid JSON ({exc})") from exc
    return GradientTables(steps=steps, bounds=bounds, mean_grad=mean_grad,
                          coefficients=coefficients, meta=meta)


def model_name(model: StreamingSegmenter) -> str | None:
    """The registry name of a model's architecture (e.g. "bisenet"), or None if unknown."""
    from edge.models.registry import _BUILDERS

    module = type(model).__module__
    names = [name for name, target in _BUILDERS.items() if target.split(":")[0] == module]
    return names[0] if len(names) == 1 else None


def tables_for(model: StreamingSegmenter, path: str | Path | None = None) -> GradientTables:
    """The table file `path`, else the tables shipped for the model (edge/tables/NAME.npz)."""
    if path is not None:
        return load_tables(path)
    name = model_name(model)
    shipped = TABLE_DIR / f"{name}.npz"
    if name is None or not shipped.exists():
        raise TableFileError(
            f"no STAC tables shipped for model {name or type(model).__name__!r} ({shipped}); "
            "build them with `stac-sim tables build --model SPEC --data DIR -o FILE` "
            "(SPEC as given to --model) and pass the file with --tables")
    return load_tables(shipped)
