"""Metrics against brute-force Python references (STAC §VIII-A definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stac.metrics import ConfusionMatrix, bitrate_kbps, confusion, mean_iou, pixel_accuracy

K, VOID = 11, 11


def _brute(pred, target, k=K, ignore=VOID):
    """Pixel-by-pixel loops: P[i][j], PA and mIoU over classes in target or prediction."""
    p_ij = [[0] * k for _ in range(k)]
    for p, t in zip(pred.ravel().tolist(), target.ravel().tolist(), strict=True):
        if t == ignore:
            continue
        p_ij[t][p] += 1
    total = sum(map(sum, p_ij))
    pa = sum(p_ij[i][i] for i in range(k)) / total if total else math.nan
    ious = []
    for i in range(k):
        row = sum(p_ij[i])
        col = sum(p_ij[j][i] for j in range(k))
        union = row + col - p_ij[i][i]
        if union:
            ious.append(p_ij[i][i] / union)
    return np.array(p_ij), pa, (sum(ious) / len(ious) if ious else math.nan)


@pytest.mark.parametrize("seed", range(20))
def test_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 12, size=2))
    nclass = int(rng.integers(1, K + 1))  # sometimes only a few classes occur
    target = rng.integers(0, nclass + 1, size=shape).astype(np.uint8)
    target[target == nclass] = VOID
    pred = np.where(rng.random(shape) < 0.6, target % K, rng.integers(0, K, size=shape))
    pred = pred.astype(np.uint8)
    p_ij, pa, miou = _brute(pred, target)
    np.testing.assert_array_equal(confusion(pred, target), p_ij)
    cm = ConfusionMatrix().update(pred, target)
    for got, want in ((cm.pixel_accuracy(), pa), (pixel_accuracy(pred, target), pa),
                      (cm.miou(), miou), (mean_iou(pred, target), miou)):
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(want)


def test_streaming_accumulation_and_merge_equal_one_shot():
    rng = np.random.default_rng(1)
    preds = rng.integers(0, K, size=(6, 9, 13))
    targets = rng.integers(0, K + 1, size=(6, 9, 13))
    one = ConfusionMatrix().update(preds, targets)
    a, b = ConfusionMatrix(), ConfusionMatrix()
    for i in range(3):
        a.update(preds[i], targets[i])
    for i in range(3, 6):
        b.update(preds[i], targets[i])
    merged = a.merge(b)
    np.testing.assert_array_equal(merged.matrix, one.matrix)
    assert merged.miou() == pytest.approx(_brute(preds, targets)[2])
    assert merged.total == int(np.count_nonzero(targets != VOID))


def test_known_small_case():
    target = np.array([[0, 0, 1, 11]])
    pred = np.array([[0, 1, 1, 5]])
    cm = ConfusionMatrix().update(pred, target)
    assert cm.pixel_accuracy() == pytest.approx(2 / 3)  # void pixel not counted
    iou = cm.per_class_iou()
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == pytest.approx(1 / 2)
    assert np.isnan(iou[5])  # predicted only on a void pixel: absent
    assert cm.miou() == pytest.approx(1 / 2)


def test_all_void_is_nan_and_bad_ids_rejected():
    t = np.full((2, 2), VOID)
    assert math.isnan(pixel_accuracy(t * 0, t))
    assert math.isnan(mean_iou(t * 0, t))
    with pytest.raises(ValueError, match="target ids"):
        confusion(np.zeros(3, int), np.array([0, 12, 1]))
    with pytest.raises(ValueError, match="predicted ids"):
        confusion(np.array([0, 11, 1]), np.zeros(3, int))
    with pytest.raises(ValueError, match="shape"):
        confusion(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="different"):
        ConfusionMatrix().merge(ConfusionMatrix(num_classes=5))


def test_no_ignore_index_counts_every_pixel():
    target = np.array([0, 1, 2, 2])
    pred = np.array([0, 1, 1, 2])
    assert pixel_accuracy(pred, target, ignore_index=None) == pytest.approx(3 / 4)
    assert mean_iou(pred, target, num_classes=3, ignore_index=None) == pytest.approx(
        (1 + 0.5 + 0.5) / 3
    )


def test_bitrate_per_window_against_brute_force():
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0, 7.5, 200))
    sizes = rng.integers(100, 20000, 200)
    got = bitrate_kbps(sizes, times, window_s=1.0)
    assert got.size == 8
    for k in range(8):
        brute = sum(int(b) for b, t in zip(sizes, times, strict=True) if k <= t < k + 1)
        assert got[k] == pytest.approx(brute * 8 / 1000)
    half = bitrate_kbps(sizes, times, window_s=0.5, duration_s=10)
    assert half.size == 20 and half[16:].sum() == 0
    assert half.sum() * 0.5 == pytest.approx(sizes.sum() * 8 / 1000)
    assert bitrate_kbps([1000], [3.0], duration_s=2).sum() == 0  # outside the duration
    with pytest.raises(ValueError):
        bitrate_kbps([1, 2], [0.0])


def test_rd_front_and_bd_rate():
    from stac.metrics import bd_rate, rd_front

    rate, quality = rd_front([400, 100, 200, 300, 250], [0.9, 0.7, 0.8, 0.85, 0.78])
    assert list(rate) == [100, 200, 300, 400] and list(quality) == [0.7, 0.8, 0.85, 0.9]
    # the same curve at 80% of the rate: BD-rate -20%, at every quality
    assert abs(bd_rate(rate, quality, 0.8 * rate, quality) + 0.2) < 1e-9
    with pytest.raises(ValueError, match="overlap"):
        bd_rate(rate, quality, rate, quality + 1)


def test_bd_rate_over_a_quality_band():
    from stac.metrics import bd_rate

    quality = np.array([0.7, 0.8, 0.9, 0.95, 0.98])
    rate = np.array([100.0, 200.0, 300.0, 400.0, 500.0])
    other = rate * np.where(quality >= 0.9, 0.5, 1.0)  # half the bits only at the top
    whole = bd_rate(rate, quality, other, quality)
    band = bd_rate(rate, quality, other, quality, low=0.95)  # PCHIP slopes equal there
    assert abs(band + 0.5) < 1e-9 and -0.5 < whole < 0
    with pytest.raises(ValueError, match="overlap"):
        bd_rate(rate, quality, other, quality, low=0.99)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.float64])
@pytest.mark.parametrize("ignore", [None, 11])
def test_confusion_and_pa_match_the_direct_count_for_every_label_dtype(dtype, ignore):
    """The counts do not depend on the labels' dtype (uint8 maps are counted without int64
    copies; floats truncate as `astype` does), with and without an ignored id."""
    rng = np.random.default_rng(4)
    target = rng.integers(0, 12 if ignore else 11, (37, 41))
    pred = np.where(rng.random(target.shape) < 0.3, rng.integers(0, 11, target.shape),
                    np.minimum(target, 10))
    want = np.zeros((11, 11), np.int64)
    for t, p in zip(target.ravel(), pred.ravel(), strict=True):
        if t != ignore:
            want[t, p] += 1
    got = confusion(pred.astype(dtype) + (0.4 if dtype is np.float64 else 0),
                    target.astype(dtype), 11, ignore)
    assert np.array_equal(got, want)
    keep = target != ignore
    assert pixel_accuracy(pred.astype(dtype), target.astype(dtype), ignore) == \
        np.count_nonzero((pred == target) & keep) / keep.sum()
