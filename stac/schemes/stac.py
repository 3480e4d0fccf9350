"""STAC (§IV-V) and the schemes that share its codec and propagation: `uniform` (one
table level everywhere) and `grace` (the paper's GRACE+, §VIII-A)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from stac.schemes.base import Scheme, Stream
from stac.schemes.params import SchemeError, SchemeParams, param

if TYPE_CHECKING:
    from edge.models.base import StreamingSegmenter

_TABLES_DOC = ("table file or model name (default: the model's shipped tables, "
               "edge/tables/MODEL.npz)")


def _tables(name: str, spec: str | None, model: StreamingSegmenter):
    """The TableSet of `spec` (None: the model's shipped tables)."""
    from edge.tables import TableFileError, tables_for

    try:
        return tables_for(model, spec).table_set()
    except TableFileError as e:
        raise SchemeError(f"scheme {name!r}: {e}") from None


@dataclass(frozen=True)
class Stac(SchemeParams):
    """STAC (§IV-V): Algorithm 1 region levels at the bound B, propagated and residual levels.

    The edge picks region levels with Algorithm 1 at B; the device propagates them and
    derives Eq. 7 residual levels, with the model's offline tables (§IV-A)."""

    name: ClassVar[str] = "stac"
    B: float = param(4.0, "loss-increment bound of Algorithm 1 (§IV-B)", low=0.0,
                     low_open=True, knob=True)
    tables: str | None = param(None, _TABLES_DOC)

    def build(self, stream: Stream, model: StreamingSegmenter) -> Scheme:
        from device.stac_agent import StacDevice
        from edge.stac_agent import StacEdge
        from edge.tuner import content_source, make_tuner
        from stac.regions import RegionGrid

        tables = _tables(self.name, self.tables, model)
        start = self.config()
        grid = RegionGrid.for_frame(stream.frame_size)  # one region grid, shared by both halves
        device = StacDevice(tables, start, source_fps=stream.source_fps,
                            frame_size=stream.frame_size, grid=grid,
                            content=content_source(stream.tuner))
        edge = StacEdge(model, tables, start, grid=grid,
                        tuner=make_tuner(stream.tuner, stream.schedule, self.name, model),
                        frame_size=stream.frame_size)
        return Scheme(name=self.name, device=device, edge=edge, config=start)


@dataclass(frozen=True)
class Uniform(SchemeParams):
    """One table level everywhere, on STAC's codec with its keyframes and propagation.

    No Algorithm 1 and no Eq. 7: the baseline that isolates STAC's table adaptation."""

    name: ClassVar[str] = "uniform"
    level: int | None = param(None, "the one table level of every region (0 finest; "
                                    "default: the middle level)", low=0, knob=True)
    tables: str | None = param(None, _TABLES_DOC)

    def build(self, stream: Stream, model: StreamingSegmenter) -> Scheme:
        from device.stac_agent import UniformDevice

        return _one_level(self, UniformDevice, stream, model)


@dataclass(frozen=True)
class Grace(Uniform):
    """The paper's GRACE+ (§VIII-A): `uniform` with intra-only keyframes.

    Every keyframe is coded as an individual image, as GRACE codes images, with STAC's
    segmentation propagation."""

    name: ClassVar[str] = "grace"

    def build(self, stream: Stream, model: StreamingSegmenter) -> Scheme:
        from device.stac_agent import GraceDevice

        return _one_level(self, GraceDevice, stream, model)


def _one_level(params: Uniform, device_class, stream: Stream,
               model: StreamingSegmenter) -> Scheme:
    """A one-level device of `device_class` and a decode-and-segment edge."""
    from edge.offload import OWN, OffloadEdge
    from edge.tuner import make_tuner

    tables = _tables(params.name, params.tables, model)
    level = tables.levels // 2 if params.level is None else params.level
    if not 0 <= level < tables.levels:
        raise SchemeError(f"scheme {params.name!r}: level must be in [0, {tables.levels - 1}] "
                          f"for these tables, got {level}")
    start = params.config(level=level)
    device = device_class(tables, start, source_fps=stream.source_fps,
                          frame_size=stream.frame_size, level=level)
    edge = OffloadEdge(OWN, model, start,
                       tuner=make_tuner(stream.tuner, stream.schedule, params.name, model),
                       tables=tables, frame_size=stream.frame_size)
    return Scheme(name=params.name, device=device, edge=edge, config=start)
