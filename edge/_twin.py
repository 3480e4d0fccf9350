"""Private stand-in for the codec's transform until `stac.codec` ships its torch twin.

4x4 orthonormal DCT of the YCbCr 4:2:0 planes (numpy, forward) and its differentiable
inverse (torch): iDCT -> chroma upsampling by replication -> RGB in [0, 1]. Coefficients
are laid out per block: (Hb, Wb, 16), frequency n = 4 * u + v (u vertical, v horizontal).
To be deleted once `stac.codec` provides the same (one way to do each thing).
"""

from __future__ import annotations

import numpy as np
import torch

from stac.codec.color import YCBCR_OFFSET, YCBCR_TO_RGB, pad_to_multiple, rgb_to_ycbcr420


def _dct_matrix(n: int = 4) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m


DCT4 = _dct_matrix()


def dct_blocks(plane: np.ndarray) -> np.ndarray:
    """(H, W) plane (H, W multiples of 4) -> (H/4, W/4, 16) orthonormal 4x4 DCT coefficients."""
    h, w = plane.shape
    blocks = plane.astype(np.float64).reshape(h // 4, 4, w // 4, 4).transpose(0, 2, 1, 3)
    coef = DCT4 @ blocks @ DCT4.T
    return coef.reshape(h // 4, w // 4, 16)


def rgb_to_coefficients(rgb: np.ndarray) -> list[np.ndarray]:
    """RGB uint8 frame -> [Y, Cb, Cr] coefficients, the frame padded to a multiple of 8."""
    y, cb, cr = rgb_to_ycbcr420(pad_to_multiple(rgb, 8))
    return [dct_blocks(p) for p in (y, cb, cr)]


def idct_blocks_torch(coef: torch.Tensor) -> torch.Tensor:
    """(Hb, Wb, 16) coefficients -> (4 Hb, 4 Wb) plane, differentiable."""
    hb, wb, _ = coef.shape
    m = torch.as_tensor(DCT4, dtype=coef.dtype, device=coef.device)
    blocks = m.T @ coef.reshape(hb, wb, 4, 4) @ m
    return blocks.permute(0, 2, 1, 3).reshape(hb * 4, wb * 4)


def coefficients_to_rgb_torch(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor,
                              height: int, width: int) -> torch.Tensor:
    """Differentiable decode: coefficients -> (1, 3, height, width) RGB in [0, 1] (unclipped)."""
    planes = [idct_blocks_torch(c) for c in (y, cb, cr)]
    up = [planes[0]] + [p.repeat_interleave(2, 0).repeat_interleave(2, 1) for p in planes[1:]]
    ycc = torch.stack([p[:height, :width] for p in up], dim=-1)
    offset = torch.as_tensor(YCBCR_OFFSET, dtype=ycc.dtype, device=ycc.device)
    matrix = torch.as_tensor(YCBCR_TO_RGB, dtype=ycc.dtype, device=ycc.device)
    rgb = (ycc - offset) @ matrix.T / 255.0
    return rgb.permute(2, 0, 1).unsqueeze(0)
