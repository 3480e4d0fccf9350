"""The edge half of `stac-plus` (beyond the paper): `StacEdge` with the Lagrangian
allocation (`edge.allocation`) and the compact level-map feedback (`stac.levelmap`).

Every keyframe: decode, gradients of the fake-label loss for every coefficient (as
`stac`), the worst-case increments dQ(r, l) of §IV-B, Eq. 2's size estimate V(r, l) of
the decoded coefficients, and the levels minimising V + mixing cost subject to
sum dQ <= B (or Algorithm 1 with allocation="closest"). The levels travel as differences
to the keyframe's own coded level map (which holds l'' where regions were coded as
residuals) or to their median, whichever message is shorter, with the uniform level at B
(or as the paper's PNG map).
"""

from __future__ import annotations

import numpy as np

from edge.allocation import Allocation, allocate, region_size_estimates, uniform_level
from edge.gradients import coefficient_gradients
from edge.models.base import StreamingSegmenter
from edge.selection import region_gradient_sums, select_levels, worst_case_increments
from edge.stac_agent import StacEdge
from edge.tuner import Tuner
from stac.agents import EdgeOutput, Work
from stac.codec.labels import encode_labels
from stac.codec.quant import TableSet
from stac.codec.transform import planes_to_coeffs
from stac.levelmap import encode_level_map
from stac.protocol import Config, Feedback, Keyframe
from stac.regions import REGION_SIZE, RegionGrid

ALLOCATIONS = ("lagrangian", "closest")
LEVELMAPS = ("delta", "png")


class PlusEdge(StacEdge):
    """Edge agent of scheme `stac-plus`: one object per connected device."""

    def __init__(self, model: StreamingSegmenter, tables: TableSet, config: Config,
                 allocation: str = "lagrangian", levelmap: str = "delta",
                 mix_bits: float = 2.2, map_bits: float = 0.0, diff_bits: float = 0.0,
                 grid: RegionGrid | None = None,
                 tuner: Tuner | None = None,
                 frame_size: tuple[int, int] | None = None) -> None:
        if allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
        if levelmap not in LEVELMAPS:
            raise ValueError(f"levelmap must be one of {LEVELMAPS}, got {levelmap!r}")
        super().__init__(model, tables, config, grid=grid, tuner=tuner, frame_size=frame_size)
        self.region_size = REGION_SIZE if grid is None else grid.region_size
        self.allocation = allocation
        self.levelmap = levelmap
        self.mix_bits = float(mix_bits)
        self.map_bits = float(map_bits)
        self.diff_bits = float(diff_bits)
        self.last_allocation: Allocation | None = None
        self.last_uniform: int | None = None

    def on_keyframe(self, keyframe: Keyframe) -> EdgeOutput:
        """Decode, segment + gradients (one step), allocation, feedback as real bytes."""
        planes = self.decoder.decode_planes(keyframe.payload)
        coded = self.decoder.last_level_map.copy()  # the map the device coded this frame with
        h, w = planes[0].shape
        coeffs = planes_to_coeffs(*planes)
        grads, self._state = coefficient_gradients(self.model, coeffs, h, w, self._state)
        levels, uniform = self.select(grads.planes, coeffs, h, w)
        self.last_levels, self.last_uniform = levels, uniform
        if self.levelmap == "delta":  # against the coded map, or the median: the shorter
            data = min(encode_level_map(levels, uniform, reference=coded),
                       encode_level_map(levels, uniform), key=len)
        else:
            data = encode_labels(levels.astype(np.uint8))
        feedback = Feedback(index=keyframe.index, segmentation=encode_labels(grads.labels),
                            levels=data)
        pixels = h * w
        return EdgeOutput(feedback=feedback, work=[
            Work("decode", pixels), Work("inference", pixels), Work("gradient", pixels),
            Work("strategy", pixels)])

    def select(self, grads, coeffs, height: int, width: int) -> tuple[np.ndarray, int]:
        """(levels, uniform level at B) from the keyframe's gradients and coefficients."""
        B = self.config["B"]
        dq = worst_case_increments(region_gradient_sums(grads, height, width,
                                                        self.region_size), self.tables.steps)
        if self.allocation == "closest":  # Algorithm 1, exactly as `stac`
            levels = select_levels(grads, self.tables.steps, B, height, width, self.region_size)
            return levels, uniform_level(dq, B)
        size = region_size_estimates(coeffs, self.tables.steps, height, width, self.region_size)
        self.last_allocation = allocate(size, dq, B, self.mix_bits, self.map_bits,
                                        self.diff_bits)
        return self.last_allocation.levels, self.last_allocation.uniform_level
