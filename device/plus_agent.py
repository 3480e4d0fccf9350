"""The device half of `stac-plus` (beyond the paper): `StacDevice` with compact fed-back
levels, confidence-weighted propagation and the DNN-aware residual rule.

- Feedback levels arrive as a `stac.levelmap` message coded against the level map of the
  keyframe they answer (the device keeps the maps it coded), or as the paper's PNG map.
- l' of a new keyframe: the propagated levels blended toward the edge's uniform level
  where the per-region confidence (`device.confidence`) is low; after a shot cut, the
  uniform level everywhere.
- l'': `device.dnn_residual` (gradient-weighted error bound with 7b), or Eq. 7 as `stac`.
Each component has a switch (the scheme's parameters) so that it can be ablated.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from device.confidence import PHOTOMETRIC_SCALE, blend_levels, region_confidence
from device.dnn_residual import DnnResidual, dnn_residual_levels
from device.flow import FlowConfig, to_grey
from device.stac_agent import StacDevice
from stac.agents import Work
from stac.codec.color import rgb_to_ycbcr420
from stac.codec.labels import decode_labels
from stac.codec.quant import TableSet, region_grid_shape
from stac.codec.transform import planes_to_coeffs
from stac.levelmap import decode_level_map
from stac.protocol import Config, Feedback, Keyframe
from stac.regions import RegionGrid

LEVELMAPS = ("delta", "png")
RESIDUAL_RULES = ("dnn", "eq7")
KEPT_KEYFRAMES = 64  # coded level maps kept to decode feedback against


class PlusDevice(StacDevice):
    """Device agent of scheme `stac-plus`: one object per stream."""

    def __init__(self, tables: TableSet, config: Config, source_fps: float,
                 frame_size: tuple[int, int], levelmap: str = "delta", confidence: bool = True,
                 residual_rule: str = "dnn", confidence_scale: float = PHOTOMETRIC_SCALE,
                 flow: FlowConfig | None = None, grid: RegionGrid | None = None) -> None:
        if levelmap not in LEVELMAPS:
            raise ValueError(f"levelmap must be one of {LEVELMAPS}, got {levelmap!r}")
        if residual_rule not in RESIDUAL_RULES:
            raise ValueError(f"residual_rule must be one of {RESIDUAL_RULES}, "
                             f"got {residual_rule!r}")
        if not confidence_scale > 0:
            raise ValueError(f"confidence_scale must be > 0, got {confidence_scale}")
        super().__init__(tables, config, source_fps, frame_size, flow, grid)
        self.region_size = self.grid.region_size
        self.levelmap = levelmap
        self.use_confidence = bool(confidence)
        self.residual_rule = residual_rule
        self.confidence_scale = float(confidence_scale)
        self._coded: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._uniform: int | None = None  # the edge's uniform level at its budget
        self._anchor_grey: np.ndarray | None = None
        self.last_confidence: np.ndarray | None = None  # per region, newest keyframe
        self.last_dnn_decision: DnnResidual | None = None

    def _keyframe(self, index: int, t: float, frame: np.ndarray) -> Keyframe:
        """As `stac`, keeping the coded level map and the grey frame for the feedback."""
        keyframe = super()._keyframe(index, t, frame)
        self._coded[index] = (self.keyframes[-1].levels.copy(), to_grey(frame))
        while len(self._coded) > KEPT_KEYFRAMES:
            self._coded.popitem(last=False)
        return keyframe

    def on_feedback(self, feedback: Feedback) -> list[Work]:
        """Cache the segmentation, levels and uniform level of a keyframe newer than the
        anchor (levels decoded against that keyframe's coded map)."""
        if self.cache.anchor is not None and feedback.index <= self.cache.anchor:
            return []
        coded = self._coded.get(feedback.index)
        try:
            self.cache.set_anchor(feedback.index)
        except ValueError:  # too old to propagate from (flows dropped): keep the current one
            return []
        self._labels = decode_labels(feedback.segmentation)
        if self.levelmap == "delta":
            message = decode_level_map(feedback.levels, None if coded is None else coded[0])
            self._levels = message.levels.astype(np.int64)
            self._uniform = message.uniform_level
        else:
            self._levels = decode_labels(feedback.levels).astype(np.int64)
            self._uniform = int(np.median(self._levels))
        self._anchor_grey = None if coded is None else coded[1]
        return []

    def _levels_prime(self) -> np.ndarray:
        """l': propagated levels blended toward the uniform level by confidence; the uniform
        level after a shot cut; the paper's rule with confidence off or nothing fed back."""
        if not self.use_confidence or self._levels is None or self._uniform is None:
            return super()._levels_prime()
        grid = region_grid_shape(self.height, self.width, self.region_size)
        if self.cut_since_anchor() or self._anchor_grey is None:
            self.last_confidence = np.zeros(grid)
            return np.full(grid, self._uniform, np.int64)
        propagated = super()._levels_prime()
        self.last_confidence = region_confidence(
            self.cache.covered(), self._anchor_grey, self._grey, self.cache.to_anchor(), grid,
            self.region_size, self.confidence_scale)
        return blend_levels(propagated.astype(np.int64), self.last_confidence, self._uniform)

    def _residual_levels(self, index: int, frame: np.ndarray, original: tuple[np.ndarray, ...],
                         lp: np.ndarray, planes: tuple[np.ndarray, ...] | None = None,
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        """l'' by the DNN-aware rule (`device.dnn_residual`), or Eq. 7 as `stac`."""
        if self.residual_rule == "eq7" or self._prev_key is None:
            return super()._residual_levels(index, frame, original, lp, planes)
        planes = rgb_to_ycbcr420(frame) if planes is None else planes
        self._scratch.reset()
        alone = self._scratch.encode_planes(*planes, levels=lp, intra=True)
        residual = self.encoder.inter_residual_coeffs(frame, lp, planes=planes)
        decision = dnn_residual_levels(original, planes_to_coeffs(*alone.planes), residual,
                                       self.tables.steps, lp, alone.stats.region_size_model,
                                       self.height, self.width, self.region_size)
        self.last_dnn_decision = decision
        return decision.levels.astype(np.int64), decision.residual
