"""Device half of plain offloading (the H.264 / JPEG baselines of STAC §VIII-A, §VIII-D).

Every k-th captured frame (k from the configured fps, `device.content.is_keyframe`) is
encoded with a uniform quality and sent; the device shows the newest segmentation the edge
returned, as is (no propagation). The configuration's knob `qp` (x264, `h264`) or
`quality` (Pillow JPEG, `jpeg`) sets the codec's uniform quality; an optional knob `scale`
(CASVA's resolution, `casva`) encodes each keyframe downscaled from the source frame.
With `pre_encode` (scheme `casva`) the device also pre-encodes the first frame of every
second at CASVA's fixed reference configuration and reports its size as the second's
content (CASVA's content indicator, Zhang et al., INFOCOM 2022).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from device.content import difference, is_keyframe
from device.flow import to_grey
from stac.agents import DeviceAgent, DeviceOutput, Work
from stac.codec.labels import decode_labels
from stac.codec.reference import X264Encoder, jpeg_encode
from stac.protocol import Config, Content, Feedback, Keyframe

H264 = "h264"
JPEG = "jpeg"
CODECS = (H264, JPEG)


#: the configuration knob of each codec's uniform quality
KNOBS = {H264: "qp", JPEG: "quality"}


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(w, h) of a frame of `size` at resolution `scale` in (0, 1]: `size` itself at 1, else
    rounded to even numbers (x264's 4:2:0 needs them), at least 2x2 (CASVA's resolution knob)."""
    if not 0 < scale <= 1:
        raise ValueError(f"resolution scale must be in (0, 1], got {scale}")
    if scale == 1:
        return size
    return tuple(max(2, 2 * round(v * scale / 2)) for v in size)  # type: ignore[return-value]


#: CASVA's reference pre-encoding: the lowest resolution of its grid (scale 0.5) and a
#: middle QP (30, the scheme's default), one frame encoded alone (an IDR, a fresh stream),
#: so its size depends on the frame's content only, never on the configuration in force
PRE_ENCODE_SCALE = 0.5
PRE_ENCODE_QP = 30


def pre_encode_kbits(frame: np.ndarray) -> float:
    """Kilobits of `frame` (RGB uint8) encoded alone with x264 at the reference
    configuration (PRE_ENCODE_SCALE, PRE_ENCODE_QP): CASVA's content indicator."""
    h, w = frame.shape[:2]
    size = scaled_size((w, h), PRE_ENCODE_SCALE)
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    encoder = X264Encoder(size[0], size[1], qp=PRE_ENCODE_QP, fps=1)
    return len(encoder.encode(small)) * 8 / 1000.0


def pre_encode_pixels(frame: np.ndarray) -> int:
    """Pixels of the reference pre-encoding of `frame` (its `Work` size)."""
    w, h = scaled_size((frame.shape[1], frame.shape[0]), PRE_ENCODE_SCALE)
    return w * h


def pre_encoded_seconds(frames: Iterable[tuple[float, np.ndarray]]) -> dict[int, float]:
    """{second: kilobits of its first frame's reference pre-encoding} of (t, frame) pairs in
    capture order: what a `pre_encode` device reports (the offline side of the tables)."""
    out: dict[int, float] = {}
    for t, frame in frames:
        second = int(np.floor(t))
        if second not in out:
            out[second] = pre_encode_kbits(frame)
    return out


def check_knob(codec: str, knob: float) -> int:
    """The integer QP (h264, 1-51) or JPEG quality (jpeg, 1-95) of a configuration."""
    if codec not in CODECS:
        raise ValueError(f"unknown offload codec {codec!r}; expected one of {CODECS}")
    value = int(round(knob))
    low, high = (1, 51) if codec == H264 else (1, 95)
    if not low <= value <= high or value != knob:
        name = "QP" if codec == H264 else "JPEG quality"
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {knob}")
    return value


class OffloadDevice(DeviceAgent):
    """Encode keyframes at a uniform QP/quality, send them, show the newest returned result."""

    def __init__(self, codec: str, config: Config, source_fps: float,
                 pre_encode: bool = False) -> None:
        check_knob(codec, config[KNOBS[codec]])
        if not source_fps > 0:
            raise ValueError(f"source_fps must be > 0, got {source_fps}")
        self.codec = codec
        self.source_fps = float(source_fps)
        self.config = config
        self._start: int | None = None  # first frame under the current configuration
        self._encoder: X264Encoder | None = None
        self._labels: np.ndarray | None = None
        self._result_index: int | None = None
        self.pre_encode = bool(pre_encode)
        self._content: dict[int, Content] = {}  # second -> its pre-encoded content
        self._previous: np.ndarray | None = None  # the previous frame (pre_encode's d)

    def on_config(self, config: Config) -> None:
        """Adopt a new fps/knob; the next frame is a keyframe and (h264) starts a new stream."""
        check_knob(self.codec, config[KNOBS[self.codec]])
        self.config = config
        self._start = None
        self._encoder = None  # frames of the old stream may have been discarded (§VII)

    def _coded_size(self, frame: np.ndarray) -> tuple[int, int]:
        """(w, h) the codec encodes: the frame's, or its downscaled size (knob `scale`)."""
        size = (frame.shape[1], frame.shape[0])
        if "scale" in self.config.as_dict():
            size = scaled_size(size, self.config["scale"])
        return size

    def _encode(self, frame: np.ndarray, size: tuple[int, int]) -> bytes:
        knob = check_knob(self.codec, self.config[KNOBS[self.codec]])
        if size != (frame.shape[1], frame.shape[0]):  # re-encoded from the source frame
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        if self.codec == JPEG:
            return jpeg_encode(frame, quality=knob)
        if self._encoder is None:  # a new stream starts with an IDR frame carrying SPS/PPS
            h, w = frame.shape[:2]
            self._encoder = X264Encoder(w, h, qp=knob,
                                        fps=max(1, int(round(self.config.fps))))
        return self._encoder.encode(frame)

    def on_frame(self, index: int, t: float, frame: np.ndarray) -> DeviceOutput:
        """Show the newest result; if this frame is a keyframe, encode it for the uplink."""
        if self._start is None:
            self._start = index
        keyframe = None
        work: list[Work] = []
        if self.pre_encode:
            work += self._pre_encode(t, frame)
        if is_keyframe(index, self.config.fps, self.source_fps, start=self._start):
            w, h = self._coded_size(frame)
            keyframe = Keyframe(index=index, t_capture=t, payload=self._encode(frame, (w, h)))
            work.append(Work("encode", w * h))
        return DeviceOutput(segmentation=self._labels, result_index=self._result_index,
                            keyframe=keyframe, work=work, propagated=False)

    def _pre_encode(self, t: float, frame: np.ndarray) -> list[Work]:
        """At the first frame of a second: its reference pre-encoding (c, kilobits) and its
        difference from the previous frame (d), CASVA's content of that second."""
        previous, self._previous = self._previous, frame
        second = int(np.floor(t))
        if second in self._content:
            return []
        d = difference(to_grey(frame), None if previous is None else to_grey(previous))
        self._content[second] = Content(second=second, c=pre_encode_kbits(frame), d=d)
        self._content.pop(second - 3, None)
        h, w = frame.shape[:2]
        return [Work("pre_encode", pre_encode_pixels(frame)), Work("content", w * h)]

    def content(self, second: int) -> Content | None:
        """With `pre_encode`: the second's first frame pre-encoded at the reference
        configuration (c, kilobits) and its difference d; None otherwise."""
        return self._content.get(second)

    def on_feedback(self, feedback: Feedback) -> list[Work]:
        """Cache the result if it is newer than the one shown."""
        if self._result_index is None or feedback.index > self._result_index:
            self._labels = decode_labels(feedback.segmentation)
            self._result_index = feedback.index
        return []
