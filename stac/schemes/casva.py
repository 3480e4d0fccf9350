"""CASVA (Zhang et al., INFOCOM 2022; STAC §VIII-A): x264 at a uniform QP whose resolution,
keyframe rate and QP a learned policy chooses once per segment (1 s).

The halves are plain H.264 offloading (`device.offload`, `edge.offload`) with the
resolution knob `scale`: a keyframe is downscaled from the source frame before encoding (a
new resolution starts a new x264 stream with an IDR frame), and the edge upsamples its
segmentation to the full frame, where it is scored. Once a second the device pre-encodes
the second's first frame at a fixed reference configuration and reports its size as the
second's content (`device.offload.pre_encode_kbits`), the policy's content indicator. The
policy is the edge's tuner (`--tuner casva-rl:POLICY.pt`, `edge.casva_policy`); with
`fixed` the configuration stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from stac.schemes.base import Scheme, Stream
from stac.schemes.params import SchemeParams, param

if TYPE_CHECKING:
    from edge.models.base import StreamingSegmenter


@dataclass(frozen=True)
class Casva(SchemeParams):
    """CASVA: x264 at a uniform QP, resolution / fps / QP chosen per segment (§VIII-A)."""

    name: ClassVar[str] = "casva"
    qp: int = param(30, "x264 uniform quantisation parameter", low=1, high=51, knob=True)
    scale: float = param(1.0, "resolution: the encoded frame's size over the source's "
                              "(even sizes; results upsampled to full size)",
                         low=0.0, high=1.0, low_open=True, knob=True)

    def build(self, stream: Stream, model: StreamingSegmenter) -> Scheme:
        from device.offload import OffloadDevice
        from edge.offload import OffloadEdge
        from edge.tuner import make_tuner

        start = self.config()
        device = OffloadDevice("h264", start, source_fps=stream.source_fps, pre_encode=True)
        tuner = make_tuner(stream.tuner, stream.schedule, self.name, model)  # auto: casva-rl
        edge = OffloadEdge("h264", model, start, tuner=tuner, frame_size=stream.frame_size,
                           rescale=True)
        return Scheme(name=self.name, device=device, edge=edge, config=start)
