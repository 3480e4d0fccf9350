"""The device half of STAC (§V, Fig. 8) at a given fps: flow, propagation, residual levels.

Every captured frame: DIS flow to the previous raw frame (§V-A), the newest fed-back
segmentation warped to it (§V-B), and the inter-frame difference d (§VI). Every keyframe
(evenly spaced at the configured fps): the fed-back region levels propagated to it (l'),
the frame coded once at l' on its own (its reconstruction gives the 7a threshold, its
per-region size model the 7b budget V'_r), the residual against the encoder's own
motion-compensated prediction, residual levels l'' under Eq. 7, 7a, 7b (§V-C), the real
encode with the codec, and the complexity c of its unquantised coefficients (§VI).

The codec decides intra/inter per macroblock by rate-distortion; a region that falls back
(Eq. 7 fails) is coded at l' with that decision rather than forced intra (the codec has no
per-region intra flag). After a configuration change the stream restarts with an intra
frame, because the harness discards the keyframes still queued (§VII).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.content import (
    CONTENT_SOURCES,
    ContentMeter,
    complexity,
    difference,
    frame_content,
    is_keyframe,
)
from device.flow import DISFlow, FlowCache, FlowConfig, pixel_grid, to_grey
from device.propagation import middle_levels, propagate_labels, propagate_levels
from device.residual import ResidualLevels, residual_levels
from stac.agents import DeviceAgent, DeviceOutput, Work
from stac.codec.color import rgb_to_ycbcr420
from stac.codec.encoder import Encoder
from stac.codec.labels import decode_labels
from stac.codec.quant import TableSet
from stac.codec.transform import planes_to_coeffs, rgb_to_coeffs
from stac.protocol import Config, Content, Feedback, Keyframe
from stac.regions import RegionGrid

CUT_THRESHOLD = 30.0  # mean |grey difference| of adjacent frames (0-255) that marks a shot cut
RESIDUAL_SOURCES = ("codec", "flow")  # s'' of Eq. 7: the encoder's own prediction, or DIS
BUDGET_SOURCES = ("intra", "original")  # V'_r of 7b: the l'-coded keyframe, or raw s' at l'


@dataclass
class KeyframeInfo:
    """What the device decided for one keyframe (kept for inspection and experiments)."""

    index: int
    levels_prime: np.ndarray  # l' propagated (or the middle level)
    levels: np.ndarray  # the map sent to the encoder
    residual: np.ndarray | None  # regions coded as residual at l'' (None: intra frame)
    intra: bool
    n_bytes: int


class StacDevice(DeviceAgent):
    """Device agent of scheme `stac`: one object per stream."""

    intra_keyframes = False  # code every keyframe as an individual image (scheme `grace`)

    def __init__(self, tables: TableSet, config: Config, source_fps: float,
                 frame_size: tuple[int, int], flow: FlowConfig | None = None,
                 grid: RegionGrid | None = None, residual: str = "codec",
                 budget: str = "intra", cut_threshold: float | None = CUT_THRESHOLD,
                 content: str = "second") -> None:
        if not source_fps > 0:
            raise ValueError(f"source_fps must be > 0, got {source_fps}")
        self.tables = tables
        self.config = config
        self.source_fps = float(source_fps)
        self.width, self.height = (int(v) for v in frame_size)
        self.grid = RegionGrid.for_frame(frame_size) if grid is None else grid
        if (self.grid.width, self.grid.height) != (self.width, self.height):
            raise ValueError(f"region grid of {self.grid.width}x{self.grid.height} frames for "
                             f"a stream of {self.width}x{self.height}")
        region_size = self.grid.region_size
        if residual not in RESIDUAL_SOURCES:
            raise ValueError(f"residual must be one of {RESIDUAL_SOURCES}, got {residual!r}")
        if budget not in BUDGET_SOURCES:
            raise ValueError(f"budget must be one of {BUDGET_SOURCES}, got {budget!r}")
        self.residual_source = residual
        self.budget_source = budget
        if content not in CONTENT_SOURCES:
            raise ValueError(f"content must be one of {CONTENT_SOURCES}, got {content!r}")
        self.content_source = content
        self._last_frame: dict[int, tuple[np.ndarray, float]] = {}  # second -> (frame, d)
        if cut_threshold is not None and not cut_threshold > 0:
            raise ValueError(f"cut_threshold must be > 0 or None, got {cut_threshold}")
        self.cut_threshold = cut_threshold
        self._last_cut: int | None = None  # newest frame that differs from its predecessor
        #                                     by more than cut_threshold per pixel
        self.cache = FlowCache(DISFlow(flow))
        # The edge holds the offline tables (§IV-A), so frames do not carry them.
        self.encoder = Encoder(self.width, self.height, tables=tables, region_size=region_size,
                               embed_tables=False)
        self._scratch = Encoder(self.width, self.height, tables=tables, region_size=region_size,
                                embed_tables=False)
        self.meter = ContentMeter()
        self._grey: np.ndarray | None = None
        self._start: int | None = None  # first frame under the current configuration
        self._labels: np.ndarray | None = None  # segmentation of the anchor keyframe
        self._levels: np.ndarray | None = None  # region levels fed back for the anchor
        self._prev_key: tuple[int, np.ndarray] | None = None  # (index, reconstruction)
        self._search: np.ndarray | None = None  # l'' of the last keyframe: next search start
        self.last_decision: ResidualLevels | None = None  # Eq. 7 of the newest keyframe
        self.keyframes: list[KeyframeInfo] = []

    def on_config(self, config: Config) -> None:
        """Adopt a new fps; the next frame is a keyframe and the stream restarts intra."""
        self.config = config
        self._start = None
        self.encoder.reset()
        self._prev_key = None

    def on_frame(self, index: int, t: float, frame: np.ndarray) -> DeviceOutput:
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame {index}: expected {(self.height, self.width, 3)}, "
                             f"got {frame.shape}")
        pixels = self.width * self.height
        grey = to_grey(frame)
        work = []
        if self.cache.push(index, grey):
            work.append(Work("flow", pixels))
        d = difference(grey, self._grey)
        self.meter.add(t, d=d)
        if self.content_source == "frame":  # the second's last frame, pre-encoded at the step
            second = int(np.floor(t))
            self._last_frame[second] = (frame, d)
            self._last_frame.pop(second - 3, None)
        if self.cut_threshold is not None and d / pixels > self.cut_threshold:
            self._last_cut = index
        work.append(Work("content", pixels))
        self._grey = grey
        if self._start is None:
            self._start = index
        segmentation, propagated = None, False
        if self._labels is not None:
            segmentation = propagate_labels(self._labels, self.cache.to_anchor())
            propagated = self.cache.anchor != index
            work.append(Work("warp", pixels))
        keyframe = None
        if is_keyframe(index, self.config.fps, self.source_fps, start=self._start):
            keyframe = self._keyframe(index, t, frame)
            if self.keyframes[-1].residual is not None:
                work.append(Work("predictive_coding", pixels))
            work.append(Work("encode", pixels))
        return DeviceOutput(segmentation=segmentation,
                            result_index=self.cache.anchor if segmentation is not None else None,
                            keyframe=keyframe, work=work, propagated=propagated)

    def cut_since_anchor(self) -> bool:
        """A shot cut between the anchor keyframe and the newest frame: some adjacent pair of
        frames after the anchor differs by more than `cut_threshold` per pixel (d of §VI)."""
        anchor = self.cache.anchor
        return self._last_cut is not None and anchor is not None and self._last_cut > anchor

    def _levels_prime(self) -> np.ndarray:
        """l' for the new keyframe: fed-back levels propagated along the flows (§V-B). The
        first keyframe, and a keyframe after a shot cut (no flow covers it, so the cached
        strategy has no corresponding content), use the middle level (§V-B)."""
        if self._levels is None or self.cut_since_anchor():
            return middle_levels(self.height, self.width, self.tables.levels, grid=self.grid)
        return propagate_levels(self._levels, self.cache.to_anchor(), self.cache.covered(),
                                grid=self.grid)

    def _prediction(self, index: int, frame: np.ndarray) -> np.ndarray:
        """The previous keyframe's reconstruction motion-compensated to this frame."""
        prev_index, recon = self._prev_key
        try:
            flow = self.cache.flow_to(prev_index)
        except ValueError:  # flows no longer cached: zero-motion prediction
            return recon
        points = pixel_grid(self.height, self.width) + flow
        return cv2.remap(recon, points, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _keyframe(self, index: int, t: float, frame: np.ndarray) -> Keyframe:
        lp = self._levels_prime().astype(np.int64)
        planes = rgb_to_ycbcr420(frame)  # converted once, for the DCT and both encodes
        original = planes_to_coeffs(*planes)
        self.meter.add(t, c=complexity(original))
        levels, residual_mask = self._residual_levels(index, frame, original, lp, planes)
        encoded = self.encoder.encode_planes(*planes, levels=levels, intra=self.intra_keyframes)
        self._prev_key = (index, encoded.reconstruction)
        self.keyframes.append(KeyframeInfo(index=index, levels_prime=lp, levels=levels,
                                           residual=residual_mask, intra=encoded.stats.intra,
                                           n_bytes=len(encoded.data)))
        return Keyframe(index=index, t_capture=t, payload=encoded.data)

    def _residual_levels(self, index: int, frame: np.ndarray, original: tuple[np.ndarray, ...],
                         lp: np.ndarray, planes: tuple[np.ndarray, ...] | None = None,
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        """The level map to encode with and the regions coded as residual at l'' (§V-C,
        Eq. 7); (l', None) for the first keyframe of a stream. `planes` are the frame's
        4:2:0 planes (None: converted from `frame`)."""
        if self._prev_key is None:
            return lp, None
        # The keyframe l'-coded on its own (not sent) gives both constraints (§V-C): its
        # reconstruction the 7a threshold, its size model per region V'_r (7b).
        planes = rgb_to_ycbcr420(frame) if planes is None else planes
        self._scratch.reset()
        alone = self._scratch.encode_planes(*planes, levels=lp, intra=True)
        if self.residual_source == "codec":  # the encoder's own motion-compensated residual
            residual = self.encoder.inter_residual_coeffs(frame, lp, planes=planes)
        else:  # the previous reconstruction warped by the cached DIS flows
            predicted = rgb_to_coeffs(self._prediction(index, frame))
            residual = [s - p for s, p in zip(original, predicted, strict=True)]
        budget = alone.stats.region_size_model if self.budget_source == "intra" else None
        start = self._search if self._search is not None else lp
        decision = residual_levels(original, planes_to_coeffs(*alone.planes), residual,
                                   self.tables.steps, lp, start=start, budget=budget,
                                   grid=self.grid)
        self.last_decision = decision
        self._search = decision.search
        return decision.levels.astype(np.int64), decision.residual

    def on_feedback(self, feedback: Feedback) -> list[Work]:
        """Cache the segmentation and region levels of a keyframe newer than the anchor."""
        if self.cache.anchor is not None and feedback.index <= self.cache.anchor:
            return []
        try:
            self.cache.set_anchor(feedback.index)
        except ValueError:  # too old to propagate from (flows dropped): keep the current one
            return []
        self._labels = decode_labels(feedback.segmentation)
        self._levels = (decode_labels(feedback.levels).astype(np.int64) if feedback.levels
                        else None)
        return []

    def content(self, second: int) -> Content | None:
        """Mean c and d of that second (§VI); with content "frame", c and d of the second's
        last frame alone, pre-encoded at the step (CASVA's estimate, §VIII-E)."""
        if self.content_source == "frame":
            last = self._last_frame.get(second)
            return None if last is None else frame_content(second, *last)
        return self.meter.second(second)


class UniformDevice(StacDevice):
    """Device agent of scheme `uniform`: `StacDevice` (flow, propagation of the fed-back
    segmentation, keyframes at fps, the project codec with inter prediction) with one fixed
    table `level` for every region of every keyframe: no propagated levels (§V-B) and no
    residual levels (Eq. 7). The baseline that isolates STAC's table adaptation."""

    def __init__(self, tables: TableSet, config: Config, source_fps: float,
                 frame_size: tuple[int, int], level: int, flow: FlowConfig | None = None,
                 grid: RegionGrid | None = None) -> None:
        if not 0 <= level < tables.levels:
            raise ValueError(f"level must be in [0, {tables.levels - 1}], got {level}")
        super().__init__(tables, config, source_fps, frame_size, flow, grid)
        self.level = int(level)

    def _levels_prime(self) -> np.ndarray:
        return np.full(self.grid.shape, self.level, dtype=np.int64)

    def _residual_levels(self, index: int, frame: np.ndarray, original: tuple[np.ndarray, ...],
                         lp: np.ndarray, planes: tuple[np.ndarray, ...] | None = None,
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        return lp, None


class GraceDevice(UniformDevice):
    """Device agent of scheme `grace`, the paper's GRACE+ (§VIII-A): `UniformDevice` with
    every keyframe coded as an individual image (intra only, as GRACE codes images), one
    gradient-shaped table level everywhere, and the fed-back segmentation propagated."""

    intra_keyframes = True
