"""Lossless byte encoding of label maps (segmentation feedback, the GT cache).

A label map (H, W) uint8 is stored as a grayscale PNG (cv2), so `Feedback.segmentation`
carries real bytes; STAC §V-B notes losslessly compressed segmentation maps are 1-2% of
the frame size.
"""

from __future__ import annotations

import cv2
import numpy as np


class LabelCodecError(ValueError):
    """Bytes that are not a PNG label map, or an array that is not one."""


def encode_labels(labels: np.ndarray) -> bytes:
    """(H, W) uint8 label map -> PNG bytes (lossless)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8 or labels.size == 0:
        raise LabelCodecError(
            f"label map must be a non-empty (H, W) uint8 array, got {labels.shape} {labels.dtype}"
        )
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(labels), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise LabelCodecError("cv2 could not PNG-encode the label map")
    return buf.tobytes()


def decode_labels(data: bytes) -> np.ndarray:
    """PNG bytes -> (H, W) uint8 label map."""
    if not data:
        raise LabelCodecError("empty label-map bytes")
    labels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2 or labels.dtype != np.uint8:
        raise LabelCodecError(f"{len(data)} bytes are not a grayscale 8-bit PNG label map")
    return labels
