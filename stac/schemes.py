"""Registry of streaming schemes: name -> factory building (DeviceAgent, EdgeAgent).

A factory takes a `SchemeConfig` and the edge's segmentation model and returns a
`stac.sim.harness.Scheme` (both sans-IO halves plus their starting configuration). Both
drivers (`stac.sim`, `stac.emu`) build schemes here, so one name means the same algorithm
in each. Factories are looked up lazily by "module:function" strings, so registering a
scheme imports nothing until it is used.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.models.base import StreamingSegmenter
from stac.agents import DeviceAgent, EdgeAgent
from stac.protocol import Config

#: The model `stac-sim run` uses when `--model` is not given (a shipped checkpoint name).
DEFAULT_MODEL = "bisenet"
DEFAULT_SCHEME = "h264"


@dataclass(frozen=True)
class SchemeConfig:
    """What a scheme factory needs to know besides the model.

    `fps` is the keyframe rate (STAC's fps, §VI); `qp` the uniform x264 QP; `quality` the
    JPEG quality; `B` STAC's loss-increment bound; `level` the one table level of schemes
    `uniform` and `grace` (None: the middle level); `tables` the table file of `stac`,
    `uniform` and `grace` (path or model name; None: the model's shipped tables).
    `source_fps` and `frame_size` (w, h) describe the captured stream. `schedule` maps a
    second to the fps that starts then (fixed-configuration experiments; empty: the
    configuration never changes).
    """

    source_fps: float
    frame_size: tuple[int, int]
    fps: float = 10.0
    qp: int = 30
    quality: int = 50
    B: float = math.nan
    schedule: Mapping[int, float] = field(default_factory=dict)
    tables: str | None = None  # STAC table file (path or model name); None: the model's shipped
    level: int | None = None  # uniform table level (scheme `uniform`); None: levels // 2


@dataclass
class Scheme:
    """A scheme instance: its two sans-IO halves and the configuration they start with."""

    name: str
    device: DeviceAgent
    edge: EdgeAgent
    config: Config


class SchemeError(ValueError):
    """An unknown scheme name."""


# name -> "module:factory"; factories take (SchemeConfig, StreamingSegmenter) -> Scheme
_FACTORIES: dict[str, str] = {
    "grace": "stac.schemes:grace",
    "h264": "stac.schemes:h264",
    "jpeg": "stac.schemes:jpeg",
    "stac": "stac.schemes:stac",
    "uniform": "stac.schemes:uniform",
}


def list_schemes() -> list[str]:
    """Registered scheme names."""
    return sorted(_FACTORIES)


def register_scheme(name: str, target: str) -> None:
    """Register a factory given as "module:function" under `name`."""
    _FACTORIES[name] = target


def build_scheme(name: str, config: SchemeConfig, model: StreamingSegmenter) -> Scheme:
    """Both halves of scheme `name`, configured by `config`, with `model` on the edge."""
    try:
        target = _FACTORIES[name]
    except KeyError:
        raise SchemeError(
            f"unknown scheme {name!r}; known schemes: {', '.join(list_schemes())}") from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(config, model)


def _offload(codec: str, knob: int, config: SchemeConfig, model: StreamingSegmenter) -> Scheme:
    from device.offload import OffloadDevice
    from edge.offload import OffloadEdge

    start = Config(B=float(knob), fps=float(config.fps), t_effective=0.0)
    device = OffloadDevice(codec, start, source_fps=config.source_fps)
    edge = OffloadEdge(codec, model, start, schedule=config.schedule,
                       frame_size=config.frame_size)
    return Scheme(name=codec, device=device, edge=edge, config=start)


def h264(config: SchemeConfig, model: StreamingSegmenter) -> Scheme:
    """Plain H.264 offloading: x264 at uniform QP `config.qp`, no propagation (§VIII-A)."""
    return _offload("h264", config.qp, config, model)


def jpeg(config: SchemeConfig, model: StreamingSegmenter) -> Scheme:
    """Plain JPEG offloading: Pillow JPEG at `config.quality`, no propagation (§VIII-A)."""
    return _offload("jpeg", config.quality, config, model)


def _tables(name: str, config: SchemeConfig, model: StreamingSegmenter):
    """The TableSet of `config.tables` (None: the model's shipped tables)."""
    from edge.tables import TableFileError, tables_for

    try:
        return tables_for(model, config.tables).table_set()
    except TableFileError as e:
        raise SchemeError(f"scheme {name!r}: {e}") from None


def stac(config: SchemeConfig, model: StreamingSegmenter) -> Scheme:
    """STAC (§IV-V) at fixed `config.B` and `config.fps`, with the model's offline tables."""
    from device.stac_agent import StacDevice
    from edge.stac_agent import StacEdge

    if not config.B > 0:
        raise SchemeError(f"scheme 'stac' needs a loss-increment bound B > 0, got {config.B}")
    tables = _tables("stac", config, model)
    start = Config(B=float(config.B), fps=float(config.fps), t_effective=0.0)
    device = StacDevice(tables, start, source_fps=config.source_fps,
                        frame_size=config.frame_size)
    edge = StacEdge(model, tables, start, schedule=config.schedule,
                    frame_size=config.frame_size)
    return Scheme(name="stac", device=device, edge=edge, config=start)


def uniform(config: SchemeConfig, model: StreamingSegmenter) -> Scheme:
    """STAC's codec, keyframes and segmentation propagation, but one table level for every
    region of every keyframe (`config.level`): no Algorithm 1, no Eq. 7 residual levels.

    The baseline that isolates STAC's spatial and temporal table adaptation. The
    configuration's `B` field carries the level (as it carries QP / quality for h264 / jpeg).
    """
    from device.stac_agent import UniformDevice

    return _one_level("uniform", UniformDevice, config, model)


def grace(config: SchemeConfig, model: StreamingSegmenter) -> Scheme:
    """The paper's GRACE+ (§VIII-A): `uniform` with every keyframe coded as an individual
    image (intra only), as GRACE codes images, plus STAC's segmentation propagation."""
    from device.stac_agent import GraceDevice

    return _one_level("grace", GraceDevice, config, model)


def _one_level(name: str, device_class, config: SchemeConfig,
               model: StreamingSegmenter) -> Scheme:
    """Scheme `name` with a one-level device of `device_class` and a decode-and-segment edge."""
    from edge.offload import OWN, OffloadEdge

    tables = _tables(name, config, model)
    level = tables.levels // 2 if config.level is None else int(config.level)
    start = Config(B=float(level), fps=float(config.fps), t_effective=0.0)
    try:
        device = device_class(tables, start, source_fps=config.source_fps,
                              frame_size=config.frame_size, level=level)
    except ValueError as e:
        raise SchemeError(f"scheme {name!r}: {e}") from None
    edge = OffloadEdge(OWN, model, start, schedule=config.schedule, tables=tables,
                       frame_size=config.frame_size)
    return Scheme(name=name, device=device, edge=edge, config=start)
