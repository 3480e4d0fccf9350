"""Edge half of plain offloading (H.264 / JPEG baselines, STAC §VIII-A): decode, segment, feed back.

Also the edge of schemes `uniform` and `grace` (the project codec at one table level,
`OWN`): there the frames come from `stac.codec`, decoded with the table set the device
encodes with (frames do not carry it).

The model runs at the decoded frame's own resolution (the resolution the device sends);
its argmax labels go back as a PNG label map. With `rescale` (CASVA's resolution knob) the
x264 stream may come at any even size up to `frame_size` (read from its SPS) and the labels
are upsampled (nearest) to `frame_size`, so results are scored at full resolution. Once per
second the edge's `Tuner` (edge.tuner) may start a new configuration; the default
(`FixedTuner`) changes only what a fixed fps schedule says (fixed-configuration sweeps,
tests of the §VII discard rule).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edge.models.base import StreamingSegmenter, segment
from edge.tuner import FixedTuner, Tuner
from stac.agents import EdgeAgent, EdgeOutput, Work
from stac.codec.decoder import Decoder
from stac.codec.errors import BitstreamError, decoding
from stac.codec.labels import encode_labels
from stac.codec.quant import TableSet
from stac.codec.reference import X264Decoder, jpeg_decode
from stac.protocol import Config, Content, Feedback, Keyframe

H264 = "h264"
JPEG = "jpeg"
OWN = "stac"  # the project's codec (stac.codec), with a table set
_SPS = 7  # H.264 NAL unit type of a sequence parameter set


def nal_types(payload: bytes) -> list[int]:
    """NAL unit types of an Annex-B H.264 access unit (after each 00 00 01 start code)."""
    types = []
    i = payload.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(payload):
        types.append(payload[i + 3] & 0x1F)
        i = payload.find(b"\x00\x00\x01", i + 3)
    return types


class OffloadEdge(EdgeAgent):
    """Decode each keyframe (x264 stream, JPEG or the project codec), segment it, return
    the labels. The project codec (`OWN`) needs the device's `tables`."""

    def __init__(self, codec: str, model: StreamingSegmenter, config: Config,
                 tuner: Tuner | None = None,
                 frame_size: tuple[int, int] | None = None,
                 tables: TableSet | None = None, rescale: bool = False) -> None:
        if codec not in (H264, JPEG, OWN):
            raise ValueError(f"unknown offload codec {codec!r}; expected 'h264', 'jpeg' or "
                             f"{OWN!r}")
        if (codec == OWN) != (tables is not None):
            raise ValueError(f"codec {OWN!r} takes a table set, and only it")
        if rescale and (codec != H264 or frame_size is None):
            raise ValueError("rescale needs the h264 codec and the full frame_size")
        self.codec = codec
        self.rescale = rescale
        self.model = model
        self.config = config
        self.tuner = tuner or FixedTuner()
        self.frame_size = frame_size  # (w, h) the device sends; crops x264's even padding
        self._decoder: X264Decoder | None = None
        self._own = Decoder(tables, frame_size) if tables is not None else None
        self._state: Any = model.initial_state()
        self._shape: tuple[int, ...] | None = None  # the rescaled stream's decoded shape

    def _decode(self, payload: bytes) -> np.ndarray:
        """The keyframe's RGB frame; any decoding failure is a `BitstreamError`, and so is a
        frame of another size than the session's (`frame_size`)."""
        with decoding(f"{self.codec} keyframe"):
            return self._decode_frame(payload)

    def _decode_frame(self, payload: bytes) -> np.ndarray:
        if self.codec == JPEG:
            return jpeg_decode(payload, self.frame_size)
        if self._own is not None:
            return self._own.decode(payload)
        if self._decoder is None or _SPS in nal_types(payload):  # a (new) stream starts
            w, h = self.frame_size if self.frame_size is not None else (None, None)
            self._decoder = X264Decoder(None, None) if self.rescale else X264Decoder(w, h)
        rgb = self._decoder.decode(payload)
        return self._crop_rescaled(rgb) if self.rescale else rgb

    def _crop_rescaled(self, rgb: np.ndarray) -> np.ndarray:
        """A frame of a rescaled stream: the full frame (x264's even padding cropped) or a
        downscaled one; BitstreamError if it is larger than the session's frame."""
        w, h = self.frame_size
        if (rgb.shape[1], rgb.shape[0]) == (w + w % 2, h + h % 2):
            return rgb[:h, :w]
        if rgb.shape[1] > w or rgb.shape[0] > h:
            raise BitstreamError(f"H.264 frame {rgb.shape[1]}x{rgb.shape[0]} is larger than "
                                 f"the session's {w}x{h}")
        return rgb

    def on_keyframe(self, keyframe: Keyframe) -> EdgeOutput:
        """Decode, segment with the model (streaming state carried), encode the labels."""
        rgb = self._decode(keyframe.payload)
        if self.rescale and rgb.shape != self._shape:  # a new resolution: a new stream state
            self._shape, self._state = rgb.shape, self.model.initial_state()
        labels, self._state = segment(self.model, rgb, self._state)
        pixels = rgb.shape[0] * rgb.shape[1]
        if self.rescale and labels.shape[:2] != self.frame_size[::-1]:  # score at full size
            labels = cv2.resize(labels, self.frame_size, interpolation=cv2.INTER_NEAREST)
        return EdgeOutput(
            feedback=Feedback(index=keyframe.index, segmentation=encode_labels(labels)),
            work=[Work("decode", pixels), Work("inference", pixels)])

    def on_second(self, second: int, bitrate_kbps: float, bandwidth_kbps: float,
                  content: Content | None) -> Config | None:
        """The tuner's next configuration (adopted here), or None to keep the current one."""
        config = self.tuner.step(second, bitrate_kbps, bandwidth_kbps, self.config, content)
        if config is not None:
            self.config = config
        return config
