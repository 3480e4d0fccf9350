"""`accmpeg`: AccMPEG (Du et al., MLSys 2022), a baseline of STAC §VIII-A (docs/accmpeg.md).

A light AccModel on the device marks the quality-sensitive 16x16 macroblocks once per
segment of keyframes; those are coded at QP `qp`, the rest at `qp + gap`, on the project
codec with inter prediction (STAC §VII implements every H.264-based baseline on its own
H.264). The edge decodes and segments; the newest result is shown (no propagation).
Adaptation (§VIII-C) is the edge's tuner over the knobs (qp, fps), e.g. the offline
accuracy-bitrate profiles `offline:traces/...csv` (docs/accmpeg.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from stac.schemes.base import Scheme, Stream
from stac.schemes.params import SchemeError, SchemeParams, param

if TYPE_CHECKING:
    from edge.models.base import StreamingSegmenter


@dataclass(frozen=True)
class AccMPEG(SchemeParams):
    """AccMPEG (§VIII-A): AccModel mask every segment, two QPs per macroblock, newest result.

    The quality pair is (qp, qp + gap) on the H.264 QP ladder of the project codec; `qp`
    and `fps` are the knobs its adaptation changes."""

    name: ClassVar[str] = "accmpeg"
    qp: int = param(30, "QP of the high-quality macroblocks (the pair's low quality is "
                        "qp + gap)", low=0, high=50, knob=True)
    gap: int = param(10, "QP difference of the low-quality macroblocks", low=1, high=51)
    threshold: float = param(0.2, "AccModel score above which a macroblock gets the high "
                                  "quality", low=0.0, high=1.0)
    segment: int = param(10, "keyframes per AccModel run (its mask holds for the segment)",
                         low=1)
    weights: str | None = param(None, "AccModel weights file (default: the one shipped "
                                      "for the run's edge model, device/weights/"
                                      "accmodel-MODEL.pt, else the default model's)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.qp + self.gap > 51:
            raise SchemeError(f"scheme {self.name!r}: qp + gap must be <= 51 (the QP ladder), "
                              f"got {self.qp} + {self.gap}")

    def build(self, stream: Stream, model: StreamingSegmenter) -> Scheme:
        from device.accmodel import AccModel, AccModelError
        from device.accmpeg_agent import AccMPEGDevice
        from edge.offload import OWN, OffloadEdge
        from edge.tuner import make_tuner
        from stac.codec.quant import default_tables

        try:
            accmodel = AccModel.load(self.weights or accmodel_for(model))
        except AccModelError as e:
            raise SchemeError(f"scheme {self.name!r}: {e}") from None
        start = self.config()
        device = AccMPEGDevice(accmodel, start, source_fps=stream.source_fps,
                               frame_size=stream.frame_size, gap=self.gap,
                               threshold=self.threshold, segment=self.segment)
        tuner = make_tuner(stream.tuner, stream.schedule, self.name, model)
        edge = OffloadEdge(OWN, model, start, tuner=tuner, tables=default_tables(),
                           frame_size=stream.frame_size)
        return Scheme(name=self.name, device=device, edge=edge, config=start)


def accmodel_for(model: StreamingSegmenter | None) -> Path:
    """The shipped AccModel trained against `model`'s architecture; the default model's,
    with an `InputWarning`, when none is shipped for it (its labels were another model's)."""
    from device.accmodel import WEIGHTS, weights_for
    from edge.tables import model_name
    from stac.notices import InputWarning

    name = model_name(model) if model is not None else None
    path = weights_for(name)
    if name is not None and not path.is_file():
        warnings.warn(InputWarning(f"no AccModel shipped for edge model {name!r} ({path}); "
                                   f"using {WEIGHTS.name}, trained against another model "
                                   "(train one with `stac-sim accmpeg train --model "
                                   f"{name}`)"), stacklevel=3)
        return WEIGHTS
    return path
