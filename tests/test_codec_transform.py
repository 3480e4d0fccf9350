"""Transform and quantisation: perfect reconstruction, numpy/torch agreement, region tables."""

import numpy as np
import pytest
import torch

from stac.codec.color import rgb_to_ycbcr420, ycbcr420_to_rgb
from stac.codec.quant import (
    DEADZONE_INTER,
    TableSet,
    block_steps,
    check_level_map,
    default_tables,
    dequantise,
    expand_levels,
    quantise,
    region_grid_shape,
    region_sum,
    size_model,
)
from stac.codec.transform import (
    DCT4,
    blockify,
    coeffs_to_rgb,
    coeffs_to_rgb_torch,
    dct_blocks,
    idct_blocks,
    rgb_to_coeffs,
    unblockify,
)


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 37 * 50).reshape(37, 50)
    rgb = np.stack([base, base[::-1], np.full_like(base, 90)], -1)
    return np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)


def test_dct_is_orthonormal_and_invertible():
    assert np.allclose(DCT4 @ DCT4.T, np.eye(4))
    x = np.random.default_rng(1).normal(size=(7, 5, 16))
    assert np.allclose(idct_blocks(dct_blocks(x)), x)
    flat = np.full((1, 1, 16), 10.0)
    c = dct_blocks(flat)
    assert np.isclose(c[0, 0, 0], 40.0) and np.allclose(c[0, 0, 1:], 0)
    plane = np.arange(8 * 12).reshape(8, 12)
    assert np.array_equal(unblockify(blockify(plane)), plane)
    assert np.array_equal(blockify(plane)[1, 2], plane[4:8, 8:12].ravel())


def test_coefficients_reconstruct_the_frame(frame):
    h, w = frame.shape[:2]
    y, cb, cr = rgb_to_coeffs(frame)
    assert y.shape == (10, 14, 16) and cb.shape == cr.shape == (5, 7, 16)
    rgb = coeffs_to_rgb(y, cb, cr, h, w)
    expected = ycbcr420_to_rgb(*rgb_to_ycbcr420(frame))
    assert rgb.shape == (3, h, w)
    assert np.array_equal(
        np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8), expected.transpose(2, 0, 1)
    )


def test_torch_twin_matches_numpy_and_has_gradients(frame):
    h, w = frame.shape[:2]
    coeffs = rgb_to_coeffs(frame)
    tensors = [torch.tensor(c, requires_grad=True) for c in coeffs]
    out = coeffs_to_rgb_torch(*tensors, h, w)
    assert np.allclose(out.detach().numpy(), coeffs_to_rgb(*coeffs, h, w), atol=1e-10)
    out32 = coeffs_to_rgb_torch(*[torch.tensor(c, dtype=torch.float32) for c in coeffs], h, w)
    assert np.allclose(out32.numpy(), out.detach().numpy(), atol=1e-5)
    # The gradient w.r.t. the DC of luma block (0, 0) is the sum over its 16 pixels of the
    # upstream gradient times the DC basis (1/4) times d(RGB)/dY (= 1) / 255.
    out[:, :4, :4].sum().backward()
    g = tensors[0].grad
    assert torch.isclose(g[0, 0, 0], torch.tensor(3 * 16 * 0.25 / 255, dtype=g.dtype))
    assert torch.count_nonzero(g[1:]) == 0 and torch.count_nonzero(tensors[1].grad[0, 0]) > 0


def test_deadzone_quantisation():
    steps = np.full(16, 10.0)
    c = np.array([0, 6.6, 6.7, -6.7, 8.4, 8.5, 15, 26.0, 100] + [0] * 7, dtype=float)
    q = quantise(c, steps)
    assert q[:9].tolist() == [0, 0, 1, -1, 1, 1, 1, 2, 10]
    assert quantise(c, steps, DEADZONE_INTER)[:9].tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 10]
    assert np.array_equal(dequantise(q, steps), q * 10.0)


def test_tables_and_region_maps():
    t = default_tables()
    assert t.steps.shape == (52, 3, 16) and np.all(np.diff(t.steps[:, 0, 0]) > 0)
    assert np.isclose(t.steps[4, 0, 0], 1.0) and np.isclose(t.steps[28, 0, 0], 16.0)
    assert t.steps[51, 1, 0] < t.steps[51, 0, 0]  # chroma QP saturates at 39 as in H.264
    assert TableSet.from_units(t.to_units()).table_id == t.table_id
    assert TableSet(t.steps * 1.01).table_id != t.table_id
    with pytest.raises(ValueError):
        TableSet(np.zeros((2, 3, 16)))
    assert region_grid_shape(360, 480) == (15, 20)
    assert region_grid_shape(272, 640) == (12, 27)  # 68 block rows: last region row is 2 tall
    lm = np.arange(12 * 27).reshape(12, 27)
    lv = expand_levels(lm, 68, 160, 6)
    assert lv[0, 0] == 0 and lv[5, 5] == 0 and lv[6, 6] == 28 and lv[67, 159] == lm[-1, -1]
    lc = expand_levels(lm, 34, 80, 6, chroma=True)
    assert lc[3, 3] == lm[1, 1] and lc[2, 2] == lm[0, 0]
    counts = region_sum(np.ones((68, 160)), 6, (12, 27))
    assert counts[0, 0] == 36 and counts[-1, -1] == 2 * 4 and counts.sum() == 68 * 160
    with pytest.raises(ValueError):
        check_level_map(np.zeros((3, 3), int), (12, 27), 52)
    with pytest.raises(ValueError):
        check_level_map(np.full((12, 27), 52), (12, 27), 52)
    steps = block_steps(t, np.full((12, 27), 10), 34, 80, 6, component=1)
    assert steps.shape == (34, 80, 16) and np.allclose(steps, t.steps[10, 1])


def test_size_model_counts_only_nonzero_levels():
    c = np.array([[64.0, 8.0, 4.0] + [0.0] * 13])
    assert np.isclose(size_model(c, np.full(16, 4.0))[0], 4 + 1 + 0)


def test_numba_numpy_and_torch_dcts_agree():
    """The codec's numba 4x4 kernels (`predict.fdct4`, `idct4`), the numpy transform of the
    coefficient layout (`dct_blocks`, `idct_blocks`) and the torch twin used for gradients
    (`coeffs_to_rgb_torch`) are one transform: same coefficients, same pixels."""
    from stac.codec.predict import fdct4, idct4
    from stac.codec.transform import dct_blocks, idct_blocks

    rng = np.random.default_rng(0)
    blocks = rng.integers(-128, 128, (200, 16)).astype(np.float64)
    ours = dct_blocks(blocks)
    for b, want in zip(blocks, ours, strict=True):
        a = b.copy()
        fdct4(a)
        np.testing.assert_allclose(a, want, atol=1e-9)
        idct4(a)
        np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_allclose(idct_blocks(ours), blocks, atol=1e-9)
    # torch: the same coefficients decode to the numpy pixels
    planes = [rng.integers(0, 256, shape).astype(np.float64) for shape in
              ((8, 16), (4, 8), (4, 8))]
    coeffs = [dct_blocks(blockify(p - 128.0)) for p in planes]
    got = coeffs_to_rgb_torch(*(torch.tensor(c) for c in coeffs), 8, 16).numpy()
    np.testing.assert_allclose(got, coeffs_to_rgb(*coeffs, 8, 16), atol=1e-9)


def test_dct_kernel_is_the_matrix_product_bit_for_bit():
    """`dct_blocks` / `dct_plane` (numba) compute every entry of C @ X @ C.T as fused
    multiply-adds over k = 0..3 from zero: exactly (as rational arithmetic rounded once per
    step says) and, as the saved reference outputs require, bit for bit what numpy's
    matrix product gave before (its BLAS kernel on this machine)."""
    from fractions import Fraction

    from stac.codec.transform import dct_plane

    def fma(a, b, c):
        return float(Fraction(a) * Fraction(b) + Fraction(c))

    def exact(x):
        x = x.reshape(4, 4)
        t = [[0.0] * 4 for _ in range(4)]
        for i in range(4):
            for j in range(4):
                for k in range(4):
                    t[i][j] = fma(DCT4[i, k], x[k, j], t[i][j])
        out = np.zeros(16)
        for i in range(4):
            for j in range(4):
                acc = 0.0
                for k in range(4):
                    acc = fma(t[i][k], DCT4[j, k], acc)
                out[4 * i + j] = acc
        return out

    rng = np.random.default_rng(3)
    blocks = np.concatenate([rng.integers(-255, 256, (40, 16)).astype(np.float64),
                             rng.normal(0, 60, (40, 16))])
    got = dct_blocks(blocks)
    for b, g in zip(blocks, got, strict=True):
        assert np.array_equal(g, exact(b))
    plane = rng.integers(0, 256, (24, 32)).astype(np.uint8)
    want = (DCT4 @ blockify(plane.astype(np.float64) - 128.0).reshape(6, 8, 4, 4) @ DCT4.T)
    assert np.array_equal(dct_plane(plane, 128.0), want.reshape(6, 8, 16))
    many = rng.normal(0, 80, (20000, 16))
    assert np.array_equal(dct_blocks(many), (DCT4 @ many.reshape(-1, 4, 4) @ DCT4.T)
                          .reshape(-1, 16))
    with pytest.raises(ValueError, match="multiple of 4"):
        dct_plane(np.zeros((6, 8)))
