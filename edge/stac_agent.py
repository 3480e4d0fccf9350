"""The edge half of STAC (§IV-B, Fig. 5) at a given B: decode, segment, gradients, Algorithm 1.

Every keyframe: decode with the codec, DCT the decoded frame once more and back-propagate
the fake-label loss to every coefficient (§IV-B, §V-C (i)) in the same streaming step that
yields the segmentation, pick one table level per region with Algorithm 1 at the bound B,
and feed both back as PNG bytes (segmentation map and region-level map). Once per second
the edge's `Tuner` (edge.tuner) may change B and fps (§VI); Algorithm 1 reads the B in
force.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.gradients import coefficient_gradients
from edge.models.base import StreamingSegmenter
from edge.offload import OffloadEdge
from edge.selection import select_levels
from edge.tuner import FixedTuner, Tuner
from stac.agents import EdgeAgent, EdgeOutput, Work
from stac.codec.decoder import Decoder
from stac.codec.errors import decoding
from stac.codec.labels import encode_labels
from stac.codec.quant import TableSet
from stac.codec.transform import planes_to_coeffs
from stac.protocol import Config, Feedback, Keyframe
from stac.regions import RegionGrid


class StacEdge(EdgeAgent):
    """Edge agent of scheme `stac`: one object per connected device."""

    def __init__(self, model: StreamingSegmenter, tables: TableSet, config: Config,
                 grid: RegionGrid | None = None, tuner: Tuner | None = None,
                 frame_size: tuple[int, int] | None = None) -> None:
        if not config["B"] > 0:
            raise ValueError(f"STAC needs a loss-increment bound B > 0, got {config['B']}")
        self.model = model
        self.tables = tables
        self.config = config
        self.grid = grid  # the stream's region grid; None: the first keyframe's size, 6x6 blocks
        self.tuner = tuner or FixedTuner()
        self.decoder = Decoder(tables, frame_size)  # (w, h): the only size it accepts
        self._state: Any = model.initial_state()
        self.last_levels: np.ndarray | None = None

    def on_keyframe(self, keyframe: Keyframe) -> EdgeOutput:
        """Decode, segment + gradients (one step), Algorithm 1, feedback as real bytes."""
        with decoding("stac keyframe"):
            planes = self.decoder.decode_planes(keyframe.payload)
        h, w = planes[0].shape
        grads, self._state = coefficient_gradients(self.model, planes_to_coeffs(*planes), h, w,
                                                   self._state)
        if self.grid is None:
            self.grid = RegionGrid(w, h)
        levels = select_levels(grads.planes, self.tables.steps, self.config["B"], h, w,
                               grid=self.grid)
        self.last_levels = levels
        feedback = Feedback(index=keyframe.index, segmentation=encode_labels(grads.labels),
                            levels=encode_labels(levels.astype(np.uint8)))
        pixels = h * w
        return EdgeOutput(feedback=feedback, work=[
            Work("decode", pixels), Work("inference", pixels), Work("gradient", pixels),
            Work("strategy", pixels)])

    # The same per-second step as plain offloading: the tuner decides (reads self.tuner,
    # self.config).
    on_second = OffloadEdge.on_second
