"""Colour conversion: RGB <-> YCbCr 4:2:0, BT.601 full range ("JFIF"), 8-bit.

All codecs of the project (ours, x264 through PyAV, JPEG through Pillow) see the same
8-bit planes, so their Y-PSNR values compare like with like. Chroma is subsampled by the
mean of each 2x2 block and upsampled by pixel replication, so that the torch twin
(`stac.codec.transform.coeffs_to_rgb_torch`) can mirror the numpy path exactly.
"""

from __future__ import annotations

import numpy as np

# Rows: Y, Cb, Cr as linear functions of (R, G, B); offsets 0, 128, 128 (ITU-T T.871).
RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ]
)
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)
YCBCR_OFFSET = np.array([0.0, 128.0, 128.0])


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"expected an RGB frame shaped (H, W, 3), got {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB frame of dtype uint8, got {rgb.dtype}")
    return rgb


def pad_to_multiple(plane: np.ndarray, multiple: int) -> np.ndarray:
    """Pad the first two axes of `plane` up to a multiple of `multiple` by edge replication."""
    h, w = plane.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return plane
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (plane.ndim - 2)
    return np.pad(plane, pad, mode="edge")


def rgb_to_ycbcr_float(rgb: np.ndarray) -> np.ndarray:
    """Full-resolution YCbCr (float64, (H, W, 3)) of an RGB uint8 frame (BT.601 full range)."""
    rgb = _check_rgb(rgb).astype(np.float64)
    return rgb @ RGB_TO_YCBCR.T + YCBCR_OFFSET


def rgb_to_ycbcr420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, Cb, Cr) uint8 planes of an RGB frame; chroma is the 2x2 mean, (ceil(H/2), ceil(W/2))."""
    h, w = _check_rgb(rgb).shape[:2]
    ycc = rgb_to_ycbcr_float(pad_to_multiple(rgb, 2))
    y = np.clip(np.rint(ycc[:h, :w, 0]), 0, 255).astype(np.uint8)
    hh, hw = ycc.shape[0] // 2, ycc.shape[1] // 2
    chroma = ycc[:, :, 1:].reshape(hh, 2, hw, 2, 2).mean(axis=(1, 3))
    chroma = np.clip(np.rint(chroma), 0, 255).astype(np.uint8)
    return y, np.ascontiguousarray(chroma[:, :, 0]), np.ascontiguousarray(chroma[:, :, 1])


def ycbcr420_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) from 4:2:0 planes; chroma upsampled by pixel replication."""
    h, w = y.shape
    if cb.shape != cr.shape or cb.shape != ((h + 1) // 2, (w + 1) // 2):
        raise ValueError(f"chroma planes {cb.shape}, {cr.shape} do not match luma {y.shape}")
    up = lambda c: np.repeat(np.repeat(c, 2, axis=0), 2, axis=1)[:h, :w]  # noqa: E731
    ycc = np.stack([y, up(cb), up(cr)], axis=-1).astype(np.float64) - YCBCR_OFFSET
    rgb = ycc @ YCBCR_TO_RGB.T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays of the same shape (peak 255; inf when equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
