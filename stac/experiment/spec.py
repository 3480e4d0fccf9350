"""Sweep specifications: a `[base]` table and `[[grid]]` tables of `stac-sim run` options.

A TOML spec (or the same structure as a dict) names run options (long names, ``-`` as
``_``) and scheme parameters. Every list value in a `[[grid]]` table (or in `[base]`) is
swept: each grid table expands to the Cartesian product of its lists, on top of `[base]`.
A frame size is one value written ``"96x64"`` (or ``[96, 64]`` inside a list of sizes), so
``size = ["96x64", "160x96"]`` sweeps two sizes. Relative paths (`trace`, `video`, and
`model`/`tables` when they name a file) are looked up in the spec file's folder first,
then in the current directory.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PATH_KEYS = ("trace", "video")  # always paths (apart from video = "default" or "synthetic:...")
MAYBE_PATH_KEYS = ("model", "tables")  # a path when such a file exists, else a name


class SpecError(ValueError):
    """A sweep spec that cannot be read or expanded; the message names the file and key."""


@dataclass(frozen=True)
class SweepSpec:
    """A parsed spec: the base options, the grid tables, and the folder paths resolve from."""

    base: dict[str, Any] = field(default_factory=dict)
    grids: list[dict[str, Any]] = field(default_factory=list)
    root: Path = field(default_factory=Path.cwd)  # relative paths are looked up here first
    source: str = "<dict>"  # the spec file, for messages

    def keys(self) -> list[str]:
        """Every option the spec names, base first, in order of appearance."""
        names = dict.fromkeys(self.base)
        for g in self.grids:
            names.update(dict.fromkeys(g))
        return list(names)


def load_spec(spec: str | Path | Mapping[str, Any] | SweepSpec) -> SweepSpec:
    """A `SweepSpec` from a TOML file, a dict of the same shape (paths relative to the cwd),
    or a `SweepSpec` (returned as is)."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, Mapping):
        return _from_mapping(spec, Path.cwd(), "<dict>")
    path = Path(spec)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such sweep spec") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    return _from_mapping(data, path.resolve().parent, str(path))


def _from_mapping(data: Mapping[str, Any], root: Path, source: str) -> SweepSpec:
    if unknown := sorted(set(data) - {"base", "grid"}):
        raise SpecError(f"{source}: unknown top-level keys {unknown}; a spec has a [base] "
                        "table and [[grid]] tables")
    base = data.get("base", {})
    grids = data.get("grid", [{}])
    if isinstance(grids, Mapping):
        grids = [grids]
    if not isinstance(base, Mapping):
        raise SpecError(f"{source}: [base] must be a table, got {type(base).__name__}")
    if not isinstance(grids, list) or not all(isinstance(g, Mapping) for g in grids):
        raise SpecError(f"{source}: grid must be an array of tables ([[grid]])")
    for where, table in [("[base]", base)] + [(f"[[grid]] #{i + 1}", g)
                                              for i, g in enumerate(grids)]:
        for key, value in table.items():
            if "-" in key:
                raise SpecError(f"{source}: {where} key {key!r}: write option names with '_' "
                                f"({key.replace('-', '_')!r})")
            if key == "out":
                raise SpecError(f"{source}: {where}: 'out' is chosen by the sweep (DIR/runs/ID)")
            if isinstance(value, list) and not value:
                raise SpecError(f"{source}: {where} key {key!r}: an empty list sweeps nothing")
    return SweepSpec(base=dict(base), grids=[dict(g) for g in grids] or [{}], root=root,
                     source=source)


def expand(spec: SweepSpec) -> list[dict[str, Any]]:
    """The runs of a spec in order: per grid table, the Cartesian product of its lists (and
    of `[base]`'s), the grid's values overriding the base's. Values are as written, except
    sizes, normalised to ``"WxH"``."""
    runs = []
    for grid in spec.grids:
        table = {**spec.base, **grid}
        _check_tuner_named(spec, table)
        axes = [[(k, v) for v in _values(spec, k, value)] for k, value in table.items()]
        for combo in itertools.product(*axes):
            runs.append(dict(combo))
    return runs


def _check_tuner_named(spec: SweepSpec, table: Mapping[str, Any]) -> None:
    """A table that sweeps a configuration knob must say which tuner its runs use: under
    the default (`auto`) the knobs are only where adaptation starts, so such a grid
    silently measures the tuner, not the grid (an accuracy-bitrate sweep wants `fixed`)."""
    from stac.schemes import DEFAULT_SCHEME, SchemeError, get_scheme

    if "tuner" in table:
        return
    swept = {k for k, v in table.items() if isinstance(v, list) and len(v) > 1}
    schemes = table.get("scheme", DEFAULT_SCHEME)
    knobs = set()
    for name in schemes if isinstance(schemes, list) else [schemes]:
        try:
            knobs.update(get_scheme(str(name)).knob_names())
        except SchemeError:  # an unknown scheme fails its runs with its own message
            continue
    if swept_knobs := sorted(swept & knobs):
        raise SpecError(
            f"{spec.source}: the grid sweeps {', '.join(swept_knobs)} without naming a tuner; "
            "the default (auto) adapts them every second from these starting values. Say "
            'tuner = "fixed" for fixed configurations (accuracy-bitrate curves), or '
            'tuner = "auto" for adaptive runs from each start')


def _values(spec: SweepSpec, key: str, value: Any) -> list[Any]:
    """The values one key takes: a list is swept, anything else is one value."""
    if key == "size":
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            raise SpecError(f"{spec.source}: size = {value}: write a size as \"WxH\" (a list is "
                            "swept; sweep sizes with [\"96x64\", \"160x96\"])")
        values = value if isinstance(value, list) else [value]
        return [format_size(spec, v) for v in values]
    return value if isinstance(value, list) else [value]


def format_size(spec: SweepSpec, value: Any) -> str | None:
    """``"WxH"`` for a size written as a string or a [w, h] pair; None stays None."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            w, h = (int(v) for v in value.lower().split("x"))
        else:
            w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        raise SpecError(f"{spec.source}: size {value!r} is not \"WxH\" or [w, h]") from None
    return f"{w}x{h}"


def resolve(spec: SweepSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """The run options of one expanded run: paths made absolute (spec folder, then the cwd)
    and the size as a (w, h) pair, as `stac.sim.runner.run_options` takes them."""
    out = dict(params)
    for key in PATH_KEYS + MAYBE_PATH_KEYS:
        value = out.get(key)
        if not isinstance(value, str) or (key == "video" and (
                value == "default" or value.startswith("synthetic:"))):  # not files
            continue
        found = _find(spec, value)
        if found is not None:
            out[key] = str(found)
        elif key in PATH_KEYS:
            raise SpecError(f"{spec.source}: {key} {value!r} is neither in {spec.root} nor in "
                            f"{Path.cwd()}")
    if isinstance(out.get("schedule"), Mapping):  # TOML table keys are strings: seconds
        try:
            out["schedule"] = {int(k): float(v) for k, v in out["schedule"].items()}
        except ValueError:
            raise SpecError(f"{spec.source}: schedule {out['schedule']!r}: write "
                            "{second = fps, ...}") from None
    if out.get("size") is not None:
        w, h = out["size"].split("x")
        out["size"] = (int(w), int(h))
    return out


def _find(spec: SweepSpec, value: str) -> Path | None:
    path = Path(value).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    for folder in (spec.root, Path.cwd()):
        if (folder / path).exists():
            return (folder / path).resolve()
    return None
