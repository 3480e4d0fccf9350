"""Colour conversion: RGB <-> YCbCr 4:2:0, BT.601 full range ("JFIF"), 8-bit.

All codecs of the project (ours, x264 through PyAV, JPEG through Pillow) see the same
8-bit planes, so their Y-PSNR values compare like with like. Chroma is subsampled by the
mean of each 2x2 block and upsampled by pixel replication, so that the torch twin
(`stac.codec.transform.coeffs_to_rgb_torch`) can mirror the numpy path exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

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


@njit(cache=True)
def _to_u8(v):
    r = np.rint(v)
    return np.uint8(0 if r < 0 else (255 if r > 255 else r))


@njit(cache=True)
def _rgb_to_ycbcr420(rgb, m, y, cb, cr):
    h, w = y.shape
    for cy in range(cb.shape[0]):
        for cx in range(cb.shape[1]):
            su = 0.0
            sv = 0.0
            for dy in range(2):
                for dx in range(2):
                    py = min(2 * cy + dy, h - 1)
                    px = min(2 * cx + dx, w - 1)
                    r = float(rgb[py, px, 0])
                    g = float(rgb[py, px, 1])
                    b = float(rgb[py, px, 2])
                    if 2 * cy + dy < h and 2 * cx + dx < w:
                        y[py, px] = _to_u8(m[0, 0] * r + m[0, 1] * g + m[0, 2] * b)
                    su += m[1, 0] * r + m[1, 1] * g + m[1, 2] * b
                    sv += m[2, 0] * r + m[2, 1] * g + m[2, 2] * b
            cb[cy, cx] = _to_u8(0.25 * su + 128.0)
            cr[cy, cx] = _to_u8(0.25 * sv + 128.0)


@njit(cache=True)
def _ycbcr420_to_rgb(y, cb, cr, m, rgb):
    h, w = y.shape
    for py in range(h):
        for px in range(w):
            yy = float(y[py, px])
            u = float(cb[py // 2, px // 2]) - 128.0
            v = float(cr[py // 2, px // 2]) - 128.0
            for k in range(3):
                rgb[py, px, k] = _to_u8(m[k, 0] * yy + m[k, 1] * u + m[k, 2] * v)


def rgb_to_ycbcr420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, Cb, Cr) uint8 planes of an RGB frame; chroma is the 2x2 mean, (ceil(H/2), ceil(W/2)).

    Odd sizes: the last row/column is repeated for the chroma mean (edge replication)."""
    h, w = _check_rgb(rgb).shape[:2]
    y = np.empty((h, w), dtype=np.uint8)
    cb = np.empty(((h + 1) // 2, (w + 1) // 2), dtype=np.uint8)
    cr = np.empty_like(cb)
    _rgb_to_ycbcr420(np.ascontiguousarray(rgb), RGB_TO_YCBCR, y, cb, cr)
    return y, cb, cr


def ycbcr420_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) from 4:2:0 planes; chroma upsampled by pixel replication."""
    h, w = y.shape
    if cb.shape != cr.shape or cb.shape != ((h + 1) // 2, (w + 1) // 2):
        raise ValueError(f"chroma planes {cb.shape}, {cr.shape} do not match luma {y.shape}")
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    _ycbcr420_to_rgb(
        np.ascontiguousarray(y),
        np.ascontiguousarray(cb),
        np.ascontiguousarray(cr),
        YCBCR_TO_RGB,
        rgb,
    )
    return rgb


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays of the same shape (peak 255; inf when equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
