"""The device half of AccMPEG (Du et al., MLSys 2022; STAC §VIII-A): two qualities per macroblock.

Every keyframe (evenly spaced at the configured fps) is coded with the project codec
(`stac.codec`, inter prediction, regions of one 16x16 macroblock) on the H.264 QP ladder
(`default_tables`: level = QP): the macroblocks of the high-quality mask at QP `qp`, the
others at `qp + gap`. The mask comes from the AccModel (`device.accmodel`), run on the
first keyframe of every segment of `segment` keyframes and held for the whole segment
(AccMPEG's one mask per segment: the model runs once every 10 frames). The device shows
the newest segmentation the edge returned, as is (no propagation, as `h264`). It meters
the content (c of each keyframe, d of each frame, §VI) that the edge's tuner reads
(`offline:PROFILES.csv`, the accuracy-bitrate profiles of its adaptation, §VIII-C).
"""

from __future__ import annotations

import numpy as np

from device.accmodel import AccModel, quality_mask
from device.content import ContentMeter, difference, frame_complexity, is_keyframe
from device.flow import to_grey
from device.offload import OffloadDevice
from stac.agents import DeviceAgent, DeviceOutput, Work
from stac.codec.encoder import Encoder
from stac.codec.quant import default_tables
from stac.protocol import Config, Content, Keyframe

QP_LEVELS = 52  # the H.264 QP ladder of `default_tables`
MB_BLOCKS = 4  # 4x4 blocks per macroblock side: one codec region per macroblock


def quality_levels(mask: np.ndarray, qp: float, gap: int) -> np.ndarray:
    """Level map of a high-quality `mask`: QP `qp` inside it, `qp + gap` outside (<= 51)."""
    high = int(round(qp))
    low = high + int(gap)
    if not 0 <= high < low < QP_LEVELS:
        raise ValueError(f"AccMPEG's QP pair ({high}, {low}) must lie in [0, {QP_LEVELS - 1}] "
                         "with the low quality above the high")
    return np.where(np.asarray(mask, bool), high, low).astype(np.int64)


class AccMPEGDevice(DeviceAgent):
    """Device agent of scheme `accmpeg`: one object per stream."""

    def __init__(self, accmodel: AccModel, config: Config, source_fps: float,
                 frame_size: tuple[int, int], gap: int = 10, threshold: float = 0.2,
                 segment: int = 10) -> None:
        if not source_fps > 0:
            raise ValueError(f"source_fps must be > 0, got {source_fps}")
        if segment < 1:
            raise ValueError(f"segment must be >= 1 keyframe, got {segment}")
        quality_levels(np.zeros(1, bool), config["qp"], gap)  # the pair must fit the ladder
        self.accmodel = accmodel
        self.config = config
        self.source_fps = float(source_fps)
        self.width, self.height = (int(v) for v in frame_size)
        self.gap, self.threshold, self.segment = int(gap), float(threshold), int(segment)
        self.encoder = Encoder(self.width, self.height, tables=default_tables(),
                               region_size=MB_BLOCKS)
        self.mask: np.ndarray | None = None  # the current segment's high-quality mask
        self.masks: list[tuple[int, np.ndarray]] = []  # (keyframe index, mask) of each run
        self._start: int | None = None  # first frame under the current configuration
        self._keyframes = 0  # keyframes coded under the current configuration
        self._labels: np.ndarray | None = None
        self._result_index: int | None = None
        self.meter = ContentMeter()
        self._grey: np.ndarray | None = None

    def on_config(self, config: Config) -> None:
        """Adopt a new QP pair / fps; the stream restarts intra with a new segment (the
        keyframes still queued are discarded, §VII)."""
        quality_levels(np.zeros(1, bool), config["qp"], self.gap)
        self.config = config
        self._start = None
        self._keyframes = 0
        self.encoder.reset()

    def levels(self) -> np.ndarray:
        """The level map of the next keyframe under the current mask and QP pair."""
        return quality_levels(self.mask, self.config["qp"], self.gap)

    def on_frame(self, index: int, t: float, frame: np.ndarray) -> DeviceOutput:
        """Show the newest result; a keyframe runs the AccModel (segment start) and is coded."""
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame {index}: expected {(self.height, self.width, 3)}, "
                             f"got {frame.shape}")
        if self._start is None:
            self._start = index
        keyframe = None
        work: list[Work] = []
        pixels = self.width * self.height
        grey = to_grey(frame)
        self.meter.add(t, d=difference(grey, self._grey))
        self._grey = grey
        work.append(Work("content", pixels))
        if is_keyframe(index, self.config.fps, self.source_fps, start=self._start):
            if self._keyframes % self.segment == 0:
                self.mask = quality_mask(self.accmodel.scores(frame), self.threshold)
                self.masks.append((index, self.mask))
                work.append(Work("accmodel", pixels))
            self._keyframes += 1
            self.meter.add(t, c=frame_complexity(frame))
            encoded = self.encoder.encode(frame, self.levels())
            keyframe = Keyframe(index=index, t_capture=t, payload=encoded.data)
            work.append(Work("encode", pixels))
        return DeviceOutput(segmentation=self._labels, result_index=self._result_index,
                            keyframe=keyframe, work=work, propagated=False)

    # the newest result is cached and shown as is, exactly as plain offloading does it
    # (the same attributes: _labels, _result_index)
    on_feedback = OffloadDevice.on_feedback

    def content(self, second: int) -> Content | None:
        """Mean c and d of that second (§VI), for the edge's tuner."""
        return self.meter.second(second)
