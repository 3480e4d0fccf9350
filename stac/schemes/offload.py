"""Plain offloading without propagation: x264 (`h264`) and JPEG (`jpeg`), STAC §VIII-A."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from stac.schemes.base import Scheme, Stream
from stac.schemes.params import SchemeParams, param

if TYPE_CHECKING:
    from edge.models.base import StreamingSegmenter


def _offload(codec: str, params: SchemeParams, stream: Stream,
             model: StreamingSegmenter) -> Scheme:
    from device.offload import OffloadDevice
    from edge.offload import OffloadEdge
    from edge.tuner import make_tuner

    start = params.config()
    device = OffloadDevice(codec, start, source_fps=stream.source_fps)
    edge = OffloadEdge(codec, model, start,
                       tuner=make_tuner(stream.tuner, stream.schedule, params.name, model),
                       frame_size=stream.frame_size)
    return Scheme(name=params.name, device=device, edge=edge, config=start)


@dataclass(frozen=True)
class H264(SchemeParams):
    """Plain H.264 offloading: x264 at a uniform QP, the newest result shown (§VIII-A)."""

    name: ClassVar[str] = "h264"
    qp: int = param(30, "x264 uniform quantisation parameter", low=1, high=51, knob=True)

    def build(self, stream: Stream, model: StreamingSegmenter) -> Scheme:
        return _offload("h264", self, stream, model)


@dataclass(frozen=True)
class Jpeg(SchemeParams):
    """Plain JPEG offloading: Pillow JPEG at a uniform quality, the newest result shown."""

    name: ClassVar[str] = "jpeg"
    quality: int = param(50, "JPEG quality", low=1, high=95, knob=True)

    def build(self, stream: Stream, model: StreamingSegmenter) -> Scheme:
        return _offload("jpeg", self, stream, model)
