"""Registry of streaming schemes: name -> the dataclass that owns its parameters.

A scheme is a frozen dataclass (a `SchemeParams` subclass, like a scikit-learn estimator)
whose fields are its parameters and whose `build(stream, model)` returns the pair of
sans-IO halves (`Scheme`). Both drivers, the command line, the emulator's Hello, sweep
grids and the output columns derive from the dataclass. Third-party schemes register
without editing the project through the entry-point group ``stac_sim.schemes``
(``name = "package.module:SchemeClass"``) or with `register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from stac.schemes.base import Scheme, Stream
from stac.schemes.params import (
    Parameter,
    SchemeError,
    SchemeParams,
    UnknownSchemeError,
    param,
)

__all__ = ["DEFAULT_MODEL", "DEFAULT_SCHEME", "ENTRY_POINT_GROUP", "Parameter", "Scheme",
           "SchemeError", "SchemeParams", "Stream", "UnknownSchemeError", "get_scheme",
           "list_schemes",
           "make_scheme", "param", "register"]

#: The model `stac-sim run` uses when `--model` is not given (a shipped checkpoint name).
DEFAULT_MODEL = "dabnet"
DEFAULT_SCHEME = "h264"
ENTRY_POINT_GROUP = "stac_sim.schemes"

# name -> "module:Class" (imported on first use) or the class itself
_SCHEMES: dict[str, str | type[SchemeParams]] = {
    "accmpeg": "stac.schemes.accmpeg:AccMPEG",
    "casva": "stac.schemes.casva:Casva",
    "grace": "stac.schemes.stac:Grace",
    "h264": "stac.schemes.offload:H264",
    "jpeg": "stac.schemes.offload:Jpeg",
    "stac": "stac.schemes.stac:Stac",
    "stac-plus": "stac.schemes.plus:StacPlus",
    "uniform": "stac.schemes.stac:Uniform",
}
_entry_points_loaded = False


def register(cls: type[SchemeParams]) -> type[SchemeParams]:
    """Register a scheme class under its `name` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, SchemeParams) and cls.name):
        raise SchemeError(f"{cls!r} is not a SchemeParams subclass with a name")
    _SCHEMES[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    """Add the schemes other distributions declare in group ``stac_sim.schemes`` (once)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _SCHEMES.setdefault(ep.name, ep.value)


def list_schemes() -> list[str]:
    """Registered scheme names (the project's and those of installed entry points)."""
    _load_entry_points()
    return sorted(_SCHEMES)


def get_scheme(name: str) -> type[SchemeParams]:
    """The class of scheme `name`; SchemeError listing the known names if there is none."""
    _load_entry_points()
    try:
        target = _SCHEMES[name]
    except KeyError:
        raise UnknownSchemeError(
            f"unknown scheme {name!r}; known schemes: {', '.join(list_schemes())}") from None
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise SchemeError(f"scheme {name!r}: cannot load {target!r}: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, SchemeParams)):
            raise SchemeError(f"scheme {name!r}: {target!r} is not a SchemeParams subclass")
        if cls.name != name:
            raise SchemeError(f"scheme {name!r}: {target!r} is named {cls.name!r}")
        _SCHEMES[name] = target = cls
    return target


def make_scheme(name: str, params: Mapping[str, Any] | None = None) -> SchemeParams:
    """Scheme `name` with `params`; a parameter it does not have is a SchemeError that
    names the parameters it does have."""
    cls = get_scheme(name)
    params = dict(params or {})
    known = {p.name: p for p in cls.parameters()}
    if unknown := sorted(set(params) - set(known)):
        have = ", ".join(f"{p.name} (default {p.default})" for p in known.values())
        raise SchemeError(f"scheme {name!r} has no parameter {', '.join(unknown)}; "
                          f"its parameters: {have}")
    return cls(**params)
