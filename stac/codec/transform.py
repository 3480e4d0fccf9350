"""4x4 orthonormal DCT-II of YCbCr 4:2:0 planes, in numpy, and its differentiable torch twin.

Coefficient layout (used by the whole project): one array per component, shaped
(n_blocks_y, n_blocks_x, 16); block (by, bx) covers pixels [4*by, 4*by+4) x [4*bx, 4*bx+4)
of its plane; the last axis holds frequency n = 4*v + u (v vertical, u horizontal; n = 0 is
DC), i.e. the row-major 4x4 coefficient matrix C @ X @ C.T. Planes are level-shifted by
-128 (as JPEG) before the transform. Luma is padded (edge replication) to a multiple of 8
pixels so that every chroma block is whole; for 480x360 luma is (90, 120, 16) and each
chroma component (45, 60, 16). STAC (§IV-A, fn. 1) back-propagates through
`coeffs_to_rgb_torch` to get the gradient w.r.t. every coefficient.
"""

from __future__ import annotations

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from stac.codec.color import YCBCR_OFFSET, YCBCR_TO_RGB, pad_to_multiple, rgb_to_ycbcr420


def dct_matrix() -> np.ndarray:
    """The orthonormal 4-point DCT-II matrix C (C @ C.T = I); coefficients are C @ X @ C.T."""
    k = np.arange(4)[:, None]
    n = np.arange(4)[None, :]
    c = np.sqrt(2.0 / 4.0) * np.cos(np.pi * (2 * n + 1) * k / 8.0)
    c[0, :] = np.sqrt(1.0 / 4.0)
    return c


DCT4 = dct_matrix()


def blockify(plane: np.ndarray) -> np.ndarray:
    """(H, W) plane, H and W multiples of 4 -> (H/4, W/4, 16) blocks in row-major pixel order."""
    h, w = plane.shape
    if h % 4 or w % 4:
        raise ValueError(f"plane size {plane.shape} is not a multiple of 4")
    return plane.reshape(h // 4, 4, w // 4, 4).transpose(0, 2, 1, 3).reshape(h // 4, w // 4, 16)


def unblockify(blocks: np.ndarray) -> np.ndarray:
    """Inverse of `blockify`: (nby, nbx, 16) -> (4*nby, 4*nbx)."""
    nby, nbx, _ = blocks.shape
    return blocks.reshape(nby, nbx, 4, 4).transpose(0, 2, 1, 3).reshape(4 * nby, 4 * nbx)


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (LLVM's fma: the hardware instruction, or an exact emulation)."""
    if not all(isinstance(t, types.Float) for t in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        f64 = ir.DoubleType()
        args = [context.cast(builder, v, t, types.float64)
                for v, t in zip(args, signature.args, strict=True)]
        fma = builder.module.declare_intrinsic("llvm.fma", [f64],
                                               ir.FunctionType(f64, [f64, f64, f64]))
        return builder.call(fma, args)

    return types.float64(types.float64, types.float64, types.float64), codegen


@njit(cache=True)
def _dct_block(c, x, t, out, o):
    """C @ X @ C.T of one raster block x[16] into out[o:o + 16], every entry accumulated
    over k = 0..3 with fused multiply-adds from 0, as the BLAS kernel numpy's matmul calls
    computes each 4x4 product (so the result equals `DCT4 @ X @ DCT4.T` bit for bit)."""
    for i in range(4):
        for j in range(4):
            acc = 0.0
            for k in range(4):
                acc = _fma(c[i, k], x[4 * k + j], acc)
            t[4 * i + j] = acc
    for i in range(4):
        for j in range(4):
            acc = 0.0
            for k in range(4):
                acc = _fma(t[4 * i + k], c[j, k], acc)
            out[o + 4 * i + j] = acc


@njit(cache=True)
def _dct_rows(blocks, c, out):
    """`_dct_block` of every row of `blocks` (n, 16) into out (n, 16)."""
    t = np.empty(16)
    flat = out.reshape(-1)
    for b in range(blocks.shape[0]):
        _dct_block(c, blocks[b], t, flat, 16 * b)


@njit(cache=True)
def _dct_plane(plane, shift, c, out):
    """DCT coefficients (nby, nbx, 16) of (plane - shift), read block by block from the
    plane (the `blockify` layout without the copy)."""
    x = np.empty(16)
    t = np.empty(16)
    flat = out.reshape(-1)
    nbx = out.shape[1]
    for by in range(out.shape[0]):
        for bx in range(nbx):
            for r in range(4):
                for col in range(4):
                    x[4 * r + col] = np.float64(plane[4 * by + r, 4 * bx + col]) - shift
            _dct_block(c, x, t, flat, 16 * (by * nbx + bx))


def dct_blocks(blocks: np.ndarray) -> np.ndarray:
    """Forward 4x4 DCT of (..., 16) blocks (row-major pixels) -> (..., 16) coefficients
    (numba; bit-identical to the matrix product `DCT4 @ X @ DCT4.T`)."""
    blocks = np.asarray(blocks)
    if blocks.shape[-1:] != (16,):
        raise ValueError(f"blocks must be shaped (..., 16), got {blocks.shape}")
    x = np.ascontiguousarray(blocks, dtype=np.float64).reshape(-1, 16)
    out = np.empty_like(x)
    _dct_rows(x, DCT4, out)
    return out.reshape(blocks.shape)


def dct_plane(plane: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """`dct_blocks(blockify(plane - shift))` of an (H, W) plane, H and W multiples of 4,
    without the intermediate copies."""
    h, w = plane.shape
    if h % 4 or w % 4:
        raise ValueError(f"plane size {plane.shape} is not a multiple of 4")
    out = np.empty((h // 4, w // 4, 16))
    _dct_plane(np.ascontiguousarray(plane), float(shift), DCT4, out)
    return out


def idct_blocks(coeffs: np.ndarray) -> np.ndarray:
    """Inverse 4x4 DCT of (..., 16) coefficients -> (..., 16) pixels (float)."""
    s = np.asarray(coeffs, dtype=np.float64).reshape(*coeffs.shape[:-1], 4, 4)
    return (DCT4.T @ s @ DCT4).reshape(coeffs.shape)


def planes_to_coeffs(
    y: np.ndarray, cb: np.ndarray, cr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DCT coefficients (level-shifted by -128) of 4:2:0 uint8 planes, layout as module doc."""
    y = pad_to_multiple(np.asarray(y), 8)
    cb = pad_to_multiple(np.asarray(cb), 4)
    cr = pad_to_multiple(np.asarray(cr), 4)
    if cb.shape != (y.shape[0] // 2, y.shape[1] // 2) or cr.shape != cb.shape:
        raise ValueError(f"chroma planes {cb.shape}, {cr.shape} do not match luma {y.shape}")
    return tuple(dct_plane(p, 128.0) for p in (y, cb, cr))


def rgb_to_coeffs(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, Cb, Cr) DCT coefficient arrays of an RGB uint8 frame via its 4:2:0 uint8 planes."""
    return planes_to_coeffs(*rgb_to_ycbcr420(rgb))


def coeffs_to_rgb(
    y_coeffs: np.ndarray, cb_coeffs: np.ndarray, cr_coeffs: np.ndarray, height: int, width: int
) -> np.ndarray:
    """Float RGB (3, H, W) in [0, 1], unclamped and unrounded: numpy twin of the torch path."""
    y = unblockify(idct_blocks(y_coeffs)) + 128.0
    cb = unblockify(idct_blocks(cb_coeffs)) + 128.0
    cr = unblockify(idct_blocks(cr_coeffs)) + 128.0
    up = lambda c: np.repeat(np.repeat(c, 2, axis=0), 2, axis=1)[:height, :width]  # noqa: E731
    ycc = np.stack([y[:height, :width], up(cb), up(cr)]) - YCBCR_OFFSET[:, None, None]
    return np.einsum("ij,jhw->ihw", YCBCR_TO_RGB, ycc) / 255.0


def _idct_plane_torch(coeffs: torch.Tensor) -> torch.Tensor:
    c = torch.as_tensor(DCT4, dtype=coeffs.dtype, device=coeffs.device)
    nby, nbx, _ = coeffs.shape
    x = c.T @ coeffs.reshape(nby, nbx, 4, 4) @ c
    return x.permute(0, 2, 1, 3).reshape(4 * nby, 4 * nbx) + 128.0


def coeffs_to_rgb_torch(
    y_coeffs: torch.Tensor,
    cb_coeffs: torch.Tensor,
    cr_coeffs: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """Differentiable decode: iDCT -> upsample chroma -> RGB (3, H, W) in [0, 1], unclamped.

    Coefficients are dequantised values (levels * steps), shaped (nby, nbx, 16) as in the
    module doc. No clamping or rounding, so gradients reach every coefficient (STAC §IV-A).
    """
    y = _idct_plane_torch(y_coeffs)[:height, :width]
    up = lambda c: c.repeat_interleave(2, 0).repeat_interleave(2, 1)[:height, :width]  # noqa: E731
    cb = up(_idct_plane_torch(cb_coeffs))
    cr = up(_idct_plane_torch(cr_coeffs))
    offset = torch.as_tensor(YCBCR_OFFSET, dtype=y.dtype, device=y.device)
    ycc = torch.stack([y, cb, cr]) - offset[:, None, None]
    m = torch.as_tensor(YCBCR_TO_RGB, dtype=y.dtype, device=y.device)
    return torch.einsum("ij,jhw->ihw", m, ycc) / 255.0
