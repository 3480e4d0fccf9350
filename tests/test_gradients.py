"""Gradients w.r.t. DCT coefficients (STAC §IV) against finite differences, float64."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edge.gradients import dct_gradients
from edge.models.base import IGNORE_INDEX, StreamingSegmenter
from stac.codec.transform import coeffs_to_rgb_torch, rgb_to_coeffs


class TinySegmenter(StreamingSegmenter):
    """A small real conv net (random weights) so finite differences run in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(8, self.num_classes, 3, padding=1))

    def step(self, frame, state):
        return self.body(self.normalize(frame)), state


@pytest.fixture(scope="module")
def frame(dataset):
    path = sorted((dataset("camvid") / "val").glob("*.png"))[5]
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(cv2.resize(rgb, (30, 22), interpolation=cv2.INTER_AREA))


def losses_at(model, coef_sets, h, w, target):
    """Q for each set of coefficients, the model run once on the whole batch."""
    with torch.no_grad():
        rgb = torch.cat([coeffs_to_rgb_torch(*(torch.tensor(c) for c in coefs), h, w)[None]
                         for coefs in coef_sets])
        logits = model.step(rgb, None)[0]
        per_pixel = F.cross_entropy(logits, target.expand(len(coef_sets), -1, -1),
                                    ignore_index=IGNORE_INDEX, reduction="none")
        valid = (target != IGNORE_INDEX).sum()
        return (per_pixel.sum(dim=(1, 2)) / valid).numpy()


@pytest.mark.parametrize("true_labels", [False, True])
def test_gradients_match_finite_differences(frame, true_labels):
    model = TinySegmenter().double().eval()
    h, w = frame.shape[:2]
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 12, size=(h, w)) if true_labels else None
    grads, _ = dct_gradients(model, frame, labels=labels, dtype=torch.float64)
    coefs = rgb_to_coeffs(frame)
    assert [g.shape for g in grads.planes] == [c.shape for c in coefs] == [(6, 8, 16), (3, 4, 16),
                                                                          (3, 4, 16)]
    target = torch.as_tensor(labels if true_labels else grads.labels.astype(np.int64))[None]
    assert losses_at(model, [coefs], h, w, target)[0] == pytest.approx(grads.loss, rel=1e-12)
    eps, probes, sets = 1e-4, [], []
    for p, plane in enumerate(coefs):
        # every frequency bin of two blocks, inside the frame and in the padded border
        for idx in [(1, 2), (plane.shape[0] - 1, plane.shape[1] - 1)]:
            for n in range(16):
                for sign in (1, -1):
                    moved = [c.copy() for c in coefs]
                    moved[p][idx + (n,)] += sign * eps
                    sets.append(moved)
                probes.append(grads.planes[p][idx + (n,)])
    q = losses_at(model, sets, h, w, target)
    fd = (q[0::2] - q[1::2]) / (2 * eps)
    np.testing.assert_allclose(probes, fd, rtol=1e-5, atol=1e-10)
    assert np.count_nonzero(fd) > len(fd) // 2
    assert np.abs(grads.y).sum() > 0 and np.abs(grads.cr).sum() > 0


def test_fake_label_is_the_models_argmax(frame):
    model = TinySegmenter().double().eval()
    grads, _ = dct_gradients(model, frame, dtype=torch.float64)
    with torch.no_grad():
        rgb = torch.tensor(frame, dtype=torch.float64).permute(2, 0, 1)[None] / 255
        direct = model(rgb).argmax(1)[0].numpy()
    assert grads.labels.dtype == np.uint8 and grads.labels.shape == frame.shape[:2]
    assert np.mean(grads.labels == direct) > 0.9  # DCT round trip and 4:2:0 change few pixels
    true, _ = dct_gradients(model, frame, labels=np.zeros(frame.shape[:2]), dtype=torch.float64)
    assert true.loss > grads.loss  # the fake label sits closer to the output (§IV-B)


def test_bad_input(frame):
    model = TinySegmenter().eval()
    with pytest.raises(ValueError, match="RGB uint8"):
        dct_gradients(model, frame.astype(np.float32))
    with pytest.raises(ValueError, match="do not match"):
        dct_gradients(model, frame, labels=np.zeros((3, 3)))


def test_class_labels_equal_torch_argmax_with_ties():
    """The numpy argmax over classes is torch's argmax over dim 1 (first maximum on ties)."""
    from edge.models.base import class_labels

    torch.manual_seed(0)
    logits = torch.randn(1, 12, 37, 53)
    logits[0, 7] = logits[0, 2]  # exact ties between classes 2 and 7 everywhere
    logits[0, :, :5] = 0.0  # all classes tie on the first rows
    want = logits.argmax(1)[0].numpy()
    assert np.array_equal(class_labels(logits), want)
    assert np.all(class_labels(logits)[:5] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_argmax_is_numpys_argmax_over_the_leading_axis(dtype):
    """Ties (first wins), signed zeros, NaN (the first NaN is the maximum, as numpy has it)
    and integer input all give `argmax(axis=0)`, class for class."""
    from edge.models.base import first_argmax

    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, 29, 31)).astype(dtype)
    x[6, :4] = x[3, :4] = 9.0
    x[:, 5] = -0.0
    x[4, 5, :3] = 0.0
    x[8, 7, 2] = np.nan
    x[2, 7, 3] = x[9, 7, 3] = np.nan
    x[0, 8, :] = np.nan
    want = x.argmax(axis=0)
    assert want[7, 2] == 8 and want[7, 3] == 2 and np.all(want[:4] == 3)
    assert np.array_equal(first_argmax(x), want)
    ints = rng.integers(0, 5, (4, 6, 7))
    assert np.array_equal(first_argmax(ints), ints.argmax(axis=0))


def test_gradients_leave_the_models_parameters_as_they_were(untrained_drn):
    """The step runs with the weights frozen (no graph to them) and restores the flags."""
    flags = [p.requires_grad for p in untrained_drn.parameters()]
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    grads, _ = dct_gradients(untrained_drn, frame)
    assert [p.requires_grad for p in untrained_drn.parameters()] == flags
    assert all(p.grad is None for p in untrained_drn.parameters())
    assert np.abs(grads.y).sum() > 0
