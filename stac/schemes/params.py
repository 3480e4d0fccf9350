"""Scheme parameters as dataclass fields: a default, a one-line doc and the valid range.

A scheme is a frozen dataclass whose fields are its parameters (as a scikit-learn
estimator's constructor arguments are); `param` attaches what the command line, the
emulator's Hello, sweep grids and the output columns need, so none of them keeps a list of
its own. `SchemeParams.__post_init__` validates every field generically.
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from stac.protocol import MAX_FPS, Config


class SchemeError(ValueError):
    """An unknown scheme, a parameter it does not have, or a parameter value out of range."""


class UnknownSchemeError(SchemeError):
    """No scheme is registered under that name."""


def param(default: Any, doc: str, low: float | None = None, high: float | None = None,
          low_open: bool = False, knob: bool = False) -> Any:
    """A scheme parameter: `default`, a one-line `doc`, an optional range [low, high] (`low`
    excluded when `low_open`), and whether it is a `knob` the configuration step may change
    at run time (it then travels in the wire `Config` and is a column of the outputs)."""
    return field(default=default, metadata={"doc": doc, "low": low, "high": high,
                                            "low_open": low_open, "knob": knob})


@dataclass(frozen=True)
class Parameter:
    """What is known of one scheme parameter (for help texts, grids and validation)."""

    name: str
    type: type
    default: Any
    doc: str
    low: float | None
    high: float | None
    low_open: bool
    knob: bool
    optional: bool  # None is allowed (e.g. "the model's shipped tables")


@dataclass(frozen=True)
class SchemeParams:
    """Base of every scheme: its parameters as fields, validated on construction.

    `fps` is the keyframe rate (STAC's fps, §VI), a knob of every scheme. Subclasses set
    `name` and implement `build` (see `stac.schemes.base`).
    """

    name: ClassVar[str] = ""
    fps: float = param(10.0, "keyframe rate (STAC's fps, §VI)", low=0.0, high=MAX_FPS,
                       low_open=True, knob=True)

    def __post_init__(self) -> None:
        for p in self.parameters():
            object.__setattr__(self, p.name, _coerce(self.name, p, getattr(self, p.name)))

    @classmethod
    def parameters(cls) -> list[Parameter]:
        """The scheme's parameters in declaration order (base fields last: `fps`)."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in fields(cls):
            tp, optional = _base_type(hints[f.name])
            m = f.metadata
            out.append(Parameter(
                name=f.name, type=tp, default=None if f.default is MISSING else f.default,
                doc=m.get("doc", ""), low=m.get("low"), high=m.get("high"),
                low_open=m.get("low_open", False), knob=m.get("knob", False),
                optional=optional))
        own = [p for p in out if p.name != "fps"]
        return own + [p for p in out if p.name == "fps"]

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        """The parameters a configuration step may change at run time (wire `Config` keys)."""
        return tuple(p.name for p in cls.parameters() if p.knob)

    def get_params(self) -> dict[str, Any]:
        """The parameters as a plain dict (scikit-learn's `get_params`)."""
        return {p.name: getattr(self, p.name) for p in self.parameters()}

    def config(self, **values: float) -> Config:
        """The starting configuration: every knob's value (or its entry in `values`, for a
        knob whose value the build resolves, e.g. a default level), effective from 0."""
        return Config.of({k: float(values.get(k, getattr(self, k))) for k in self.knob_names()})


def _base_type(hint: Any) -> tuple[type, bool]:
    """(type, None allowed) of a field annotation such as `int`, `float` or `str | None`."""
    args = typing.get_args(hint)
    if args:
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) != 1:
            raise TypeError(f"scheme parameters take one type (or None), got {hint}")
        return kinds[0], type(None) in args
    return hint, False


def _coerce(scheme: str, p: Parameter, value: Any) -> Any:
    """`value` as parameter `p`'s type, or SchemeError naming the scheme and the range."""
    if value is None:
        if p.optional:
            return None
        raise SchemeError(f"scheme {scheme!r}: {p.name} needs a value ({p.doc})")
    if p.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise SchemeError(f"scheme {scheme!r}: {p.name} must be a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise SchemeError(
                f"scheme {scheme!r}: {p.name} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise SchemeError(f"scheme {scheme!r}: {p.name} must be finite, got {value!r}")
        if p.type is int:
            if not number.is_integer():
                raise SchemeError(
                    f"scheme {scheme!r}: {p.name} must be an integer, got {value!r}")
            number = int(number)
        too_low = p.low is not None and (number <= p.low if p.low_open else number < p.low)
        too_high = p.high is not None and number > p.high
        if too_low or too_high:
            raise SchemeError(f"scheme {scheme!r}: {p.name} must be in {_range(p)}, "
                              f"got {value!r}")
        return number
    if not isinstance(value, p.type):
        raise SchemeError(f"scheme {scheme!r}: {p.name} must be a {p.type.__name__}, "
                          f"got {value!r}")
    return value


def _range(p: Parameter) -> str:
    low = "-inf" if p.low is None else f"{p.low:g}"
    high = "inf" if p.high is None else f"{p.high:g}"
    return f"{'(' if p.low_open or p.low is None else '['}{low}, {high}]"
