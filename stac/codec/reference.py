"""Reference codecs for the baselines and sanity comparisons (DESIGN.md "The codec").

x264 through PyAV (libx264, uniform QP or CRF, ``preset veryfast``, ``tune zerolatency``,
no B-frames, fixed GOP) and JPEG through Pillow (quality or custom quantisation tables).
Both return the real bytes of every frame and decode them back. Frames are RGB uint8
(H, W, 3); both codecs see the BT.601 full-range 4:2:0 planes of `stac.codec.color`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from stac.codec.color import pad_to_multiple, rgb_to_ycbcr420, ycbcr420_to_rgb
from stac.codec.errors import BitstreamError, check_size

__all__ = ["X264Encoder", "X264Decoder", "jpeg_encode", "jpeg_decode"]


def _planes_to_frame(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> av.VideoFrame:
    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p")
    for plane, data in zip(frame.planes, (y, cb, cr), strict=True):
        rows = np.zeros((data.shape[0], plane.line_size), dtype=np.uint8)
        rows[:, : data.shape[1]] = data
        plane.update(rows)
    return frame


class X264Encoder:
    """Stateful x264 encoder of one stream: `encode(rgb)` returns that frame's bytes.

    Exactly one of `qp` (uniform quantiser, 0-51) or `crf` (constant rate factor) is set.
    `gop` is the keyframe interval (IPPP..., one IDR every `gop` frames; no scene cuts).
    Odd frame sizes are padded to even by edge replication; the decoder crops them back.
    """

    def __init__(
        self,
        width: int,
        height: int,
        qp: int | None = None,
        crf: float | None = None,
        gop: int = 250,
        fps: int = 25,
        preset: str = "veryfast",
        tune: str = "zerolatency",
    ) -> None:
        if (qp is None) == (crf is None):
            raise ValueError("set exactly one of qp or crf")
        if qp is not None and not 0 <= qp <= 51:
            raise ValueError(f"qp must be in [0, 51], got {qp}")
        if width < 1 or height < 1 or gop < 1 or fps < 1:
            raise ValueError(f"bad size/gop/fps: {width}x{height}, gop={gop}, fps={fps}")
        self.width, self.height = int(width), int(height)
        self.pad_w, self.pad_h = self.width + self.width % 2, self.height + self.height % 2
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = self.pad_w, self.pad_h
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, fps)
        ctx.framerate = Fraction(fps, 1)
        ctx.gop_size = gop
        ctx.max_b_frames = 0
        options = {
            "preset": preset,
            "tune": tune,
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
        }
        if qp is not None:
            options["qp"] = str(int(qp))
        else:
            options["crf"] = str(float(crf))
        ctx.options = options
        ctx.thread_count = 1
        self._ctx = ctx
        self._pts = 0

    def encode(self, rgb: np.ndarray) -> bytes:
        """Encode one RGB uint8 frame; returns its Annex-B bytes (headers in-band on IDR)."""
        rgb = np.asarray(rgb)
        if rgb.shape != (self.height, self.width, 3):
            raise ValueError(f"expected a frame of {(self.height, self.width, 3)}, got {rgb.shape}")
        return self.encode_planes(*rgb_to_ycbcr420(pad_to_multiple(rgb, 2)))

    def encode_planes(self, y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> bytes:
        """Encode one frame given as 4:2:0 uint8 planes of the padded (even) size."""
        if y.shape != (self.pad_h, self.pad_w):
            raise ValueError(f"expected a luma plane of {(self.pad_h, self.pad_w)}, got {y.shape}")
        frame = _planes_to_frame(y, cb, cr)
        frame.pts = self._pts
        self._pts += 1
        packets = self._ctx.encode(frame)
        data = b"".join(bytes(p) for p in packets)
        if not data:  # zerolatency emits one packet per frame; anything else is a setup error
            raise RuntimeError("x264 produced no packet for a frame (is tune=zerolatency set?)")
        return data


class X264Decoder:
    """Stateful H.264 decoder (FFmpeg through PyAV): `decode(bytes)` returns the RGB frame.

    `width`/`height`, when given, crop the decoded frame (undoing the encoder's even padding).
    """

    def __init__(self, width: int | None = None, height: int | None = None) -> None:
        self.width, self.height = width, height
        ctx = av.CodecContext.create("h264", "r")
        ctx.thread_count = 1
        self._ctx = ctx

    def decode_planes(self, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode one frame's bytes to its (Y, Cb, Cr) uint8 planes (padded size)."""
        try:
            frames = self._ctx.decode(av.Packet(data))
        except av.FFmpegError as exc:
            raise BitstreamError(f"H.264 decoder rejected the packet: {exc}") from exc
        if len(frames) != 1:
            raise BitstreamError(f"H.264 packet decoded to {len(frames)} frames, expected 1")
        frame = frames[0]
        if self.width is not None and self.height is not None:  # the encoder's even padding
            check_size("H.264 frame", (frame.width, frame.height),
                       (self.width + self.width % 2, self.height + self.height % 2))
        if frame.format.name not in ("yuv420p", "yuvj420p"):
            raise BitstreamError(f"unexpected H.264 pixel format {frame.format.name}")
        out = []
        for i, plane in enumerate(frame.planes[:3]):
            h, w = (frame.height, frame.width) if i == 0 else (frame.height // 2, frame.width // 2)
            rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
            out.append(np.ascontiguousarray(rows[:h, :w]))
        return out[0], out[1], out[2]

    def decode(self, data: bytes) -> np.ndarray:
        """Decode one frame's bytes to RGB uint8 (H, W, 3)."""
        rgb = ycbcr420_to_rgb(*self.decode_planes(data))
        h = self.height if self.height is not None else rgb.shape[0]
        w = self.width if self.width is not None else rgb.shape[1]
        return np.ascontiguousarray(rgb[:h, :w])


def jpeg_encode(
    rgb: np.ndarray,
    quality: int | None = None,
    qtables: Sequence[Sequence[int]] | None = None,
) -> bytes:
    """JPEG bytes of an RGB uint8 frame (4:2:0, baseline), via Pillow/libjpeg.

    Give `quality` (1-95) or `qtables`: a luma and a chroma table of 64 steps (1-255) each, in
    natural row-major 8x8 order (as Pillow takes them; GRACE+ uses DNN-derived tables).
    """
    if (quality is None) == (qtables is None):
        raise ValueError("set exactly one of quality or qtables")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {rgb.shape} {rgb.dtype}")
    kwargs: dict = {"subsampling": "4:2:0"}
    if quality is not None:
        if not 1 <= quality <= 95:
            raise ValueError(f"quality must be in [1, 95], got {quality}")
        kwargs["quality"] = int(quality)
    else:
        tables = [np.asarray(t, dtype=np.int64).ravel() for t in qtables]
        if len(tables) not in (1, 2) or any(t.size != 64 for t in tables):
            raise ValueError("qtables must hold one or two tables of 64 steps each")
        if any(t.min() < 1 or t.max() > 255 for t in tables):
            raise ValueError("JPEG quantisation steps must be in [1, 255] (baseline)")
        kwargs["qtables"] = [t.tolist() for t in tables]
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def jpeg_decode(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) of JPEG bytes; corrupt data, a decompression bomb or (when `size`
    (w, h) is given) another frame size raise `BitstreamError`, the size before decoding."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise BitstreamError(f"not a JPEG stream (format {im.format})")
            check_size("JPEG frame", im.size, size)
            return np.asarray(im.convert("RGB"))
    except BitstreamError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BitstreamError(f"corrupt JPEG stream: {type(exc).__name__}: {exc}") from exc
