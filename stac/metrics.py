"""Segmentation accuracy (pixel accuracy, mIoU; STAC §VIII-A) and bitrate accounting.

``P[i, j]`` counts pixels of true class ``i`` predicted as ``j``. PA = sum_i P_ii / sum_ij P_ij;
IoU_i = P_ii / (sum_j P_ij + sum_j P_ji - P_ii); mIoU averages IoU over the classes that occur
in the target or the prediction. Pixels whose target is ``ignore_index`` (CamVid void, 11) are
left out. The paper counts a do-not-care class among its k+1 classes; we follow the common
CamVid practice of ignoring void instead, so scores compare with published CamVid numbers.
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 11
IGNORE_INDEX = 11


class ConfusionMatrix:
    """Streaming confusion matrix over ``num_classes`` classes, ignoring ``ignore_index``."""

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int | None = IGNORE_INDEX):
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> ConfusionMatrix:
        """Add the pixels of one prediction/target pair (any matching shapes)."""
        self.matrix += confusion(pred, target, self.num_classes, self.ignore_index)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (e.g. from a parallel worker) into this one."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError("merge: confusion matrices have different classes or ignore_index")
        self.matrix += other.matrix
        return self

    def reset(self) -> None:
        self.matrix[:] = 0

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def pixel_accuracy(self) -> float:
        """Fraction of counted pixels predicted correctly (NaN if none counted)."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def per_class_iou(self) -> np.ndarray:
        """IoU per class; NaN for classes absent from both target and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes present in target or prediction (NaN if none)."""
        iou = self.per_class_iou()
        present = ~np.isnan(iou)
        return float(iou[present].mean()) if present.any() else float("nan")


def confusion(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int = NUM_CLASSES,
    ignore_index: int | None = IGNORE_INDEX,
) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts ``P[true, pred]`` via one ``np.bincount``."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    t, p = _ids(target), _ids(pred)
    if ignore_index is not None:
        keep = t != ignore_index
        if not keep.all():
            t, p = t[keep], p[keep]
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"target ids must be in [0, {num_classes}) or {ignore_index}")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted ids must be in [0, {num_classes})")
    index = t.astype(np.intp) * num_classes
    index += p
    counts = np.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _ids(labels: np.ndarray) -> np.ndarray:
    """Flat class ids: integer arrays as they are (label maps are uint8: no int64 copies),
    anything else as int64 (truncated, as `astype` does)."""
    flat = labels.reshape(-1)
    if flat.dtype.kind in "iu" and flat.dtype.itemsize <= np.dtype(np.intp).itemsize // 2:
        return flat
    return flat.astype(np.int64)


def pixel_accuracy(
    pred: np.ndarray, target: np.ndarray, ignore_index: int | None = IGNORE_INDEX
) -> float:
    """PA of one prediction against its target (STAC §VIII-A), void pixels ignored."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    if ignore_index is None:
        n = target.size
        return float(np.count_nonzero(pred == target) / n) if n else float("nan")
    keep = target != ignore_index
    n = int(keep.sum())
    return float(np.count_nonzero((pred == target) & keep) / n) if n else float("nan")


def mean_iou(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int = NUM_CLASSES,
    ignore_index: int | None = IGNORE_INDEX,
) -> float:
    """mIoU of one prediction against its target (STAC §VIII-A), void pixels ignored."""
    return ConfusionMatrix(num_classes, ignore_index).update(pred, target).miou()


def bitrate_kbps(
    byte_counts: np.ndarray,
    times: np.ndarray,
    window_s: float = 1.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Bitrate per window: bytes sent at ``times`` (s) summed into ``[k w, (k+1) w)`` bins, kbps.

    Returns one value per window up to ``duration_s`` (default: the window of the last time);
    windows with no bytes are 0.
    """
    b = np.asarray(byte_counts, dtype=np.float64).reshape(-1)
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if b.shape != t.shape:
        raise ValueError(f"{b.size} byte counts but {t.size} times")
    if not window_s > 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    if np.any(t < 0) or np.any(~np.isfinite(t)):
        raise ValueError("times must be finite and >= 0")
    if np.any(b < 0):
        raise ValueError("byte counts must be >= 0")
    if duration_s is None:
        n = int(np.floor(t.max() / window_s)) + 1 if t.size else 0
    else:
        n = int(np.ceil(duration_s / window_s - 1e-9))
    idx = np.floor(t / window_s + 1e-12).astype(np.int64)
    keep = idx < n
    sums = np.bincount(idx[keep], weights=b[keep], minlength=n)[:n]
    return sums * 8.0 / 1000.0 / window_s


def rd_front(rate: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rate-quality points no other point beats (less or equal rate, higher quality),
    sorted by rate: quality then rises strictly with rate, as `bd_rate` needs. For curves
    whose quality is not monotone in the knob (accuracy against bitrate)."""
    r = np.asarray(rate, dtype=np.float64).reshape(-1)
    q = np.asarray(quality, dtype=np.float64).reshape(-1)
    order = np.lexsort((-q, r))  # by rate, the best quality first among equal rates
    keep, best = [], -np.inf
    for i in order:
        if q[i] > best:
            keep.append(i)
            best = q[i]
    return r[keep], q[keep]


def bd_rate(rate_a, quality_a, rate_b, quality_b, low: float | None = None,
            high: float | None = None) -> float:
    """Bjontegaard delta rate of curve b relative to curve a (fraction; 0.5 = 50% more bits,
    -0.2 = 20% fewer): log-rate as a PCHIP function of quality (PSNR, PA, ...), averaged
    over the quality range both curves cover (cut to [low, high] when given, e.g. a
    high-accuracy band). Qualities must be distinct on each curve."""
    from scipy.integrate import trapezoid  # numpy < 2 has no np.trapezoid
    from scipy.interpolate import PchipInterpolator

    def curve(rate, q):
        order = np.argsort(q)
        return PchipInterpolator(np.asarray(q)[order], np.log(np.asarray(rate))[order])

    lo = max(min(quality_a), min(quality_b), -np.inf if low is None else low)
    hi = min(max(quality_a), max(quality_b), np.inf if high is None else high)
    if hi <= lo:
        raise ValueError("RD curves do not overlap in quality")
    fa, fb = curve(rate_a, quality_a), curve(rate_b, quality_b)
    grid = np.linspace(lo, hi, 200)
    diff = trapezoid(fb(grid) - fa(grid), grid) / (hi - lo)
    return float(np.exp(diff) - 1.0)
