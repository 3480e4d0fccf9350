"""DNN gradients with respect to every DCT coefficient of a decoded keyframe (STAC §IV).

The decoded keyframe goes through the DCT once more (§V-C (i): the edge only has the
decoded full frame of an inter-coded keyframe), the coefficients become leaf tensors, the
differentiable decoder (iDCT, chroma upsampling, YCbCr -> RGB) rebuilds the frame, the
backbone runs one streaming step, and the loss is back-propagated to the coefficients
(§IV-A footnote 1, after GRACE). The default loss is the fake-label loss Q_F of §IV-B:
cross-entropy against the argmax of the model's own logits; with true labels it is Q_T.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edge.models.base import IGNORE_INDEX, StreamingSegmenter, class_labels
from stac.codec.transform import coeffs_to_rgb_torch, rgb_to_coeffs


@dataclass
class DCTGradients:
    """dQ/ds per coefficient, in the codec's layout (`stac.codec.transform`): (nby, nbx, 16)
    for Y and (nby/2, nbx/2, 16) for Cb, Cr, frequency n = 4 v + u. `labels` is the
    segmentation (argmax) of the keyframe, `loss` the value of Q at the decoded frame.
    """

    y: np.ndarray
    cb: np.ndarray
    cr: np.ndarray
    labels: np.ndarray
    loss: float

    @property
    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.y, self.cb, self.cr


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.shape} {frame.dtype}")
    return frame


def dct_gradients(model: StreamingSegmenter, frame: np.ndarray, state: Any = None,
                  labels: np.ndarray | None = None,
                  dtype: torch.dtype = torch.float32) -> tuple[DCTGradients, Any]:
    """Gradients of Q_F (or Q_T when `labels` are given) w.r.t. every DCT coefficient.

    `frame` is the decoded keyframe (H, W, 3) uint8; `state` the model's streaming state
    (None: its initial state). Returns the gradients and the model's next state.
    """
    frame = _check_frame(frame)
    h, w = frame.shape[:2]
    return coefficient_gradients(model, rgb_to_coeffs(frame), h, w, state, labels, dtype)


def coefficient_gradients(model: StreamingSegmenter, coeffs: Sequence[np.ndarray], height: int,
                          width: int, state: Any = None, labels: np.ndarray | None = None,
                          dtype: torch.dtype = torch.float32) -> tuple[DCTGradients, Any]:
    """As `dct_gradients`, from the (Y, Cb, Cr) coefficients of the decoded planes (the
    codec's `planes_to_coeffs(*Decoder.decode_planes(data))`: no RGB round trip)."""
    if labels is not None and np.shape(labels) != (height, width):
        raise ValueError(f"labels {np.shape(labels)} do not match the frame {(height, width)}")
    param = next(model.parameters())
    coef = [torch.tensor(np.asarray(c), dtype=dtype, device=param.device, requires_grad=True)
            for c in coeffs]
    if state is None:
        state = model.initial_state()
    with _frozen(model):  # no graph to the weights: only the coefficients need gradients
        rgb = coeffs_to_rgb_torch(*coef, height, width).unsqueeze(0).to(param.dtype)
        logits, next_state = model.step(rgb, state)
        if not logits.requires_grad:
            raise ValueError(f"{type(model).__name__}: its logits carry no gradient; STAC's "
                             "gradients (§IV) need a model differentiable w.r.t. its input frame")
        seg = class_labels(logits)
        if labels is None:  # Q_F: the model's own argmax, any number of classes, nothing void
            loss = F.cross_entropy(logits, torch.from_numpy(seg).to(logits.device).unsqueeze(0))
        else:  # Q_T: true CamVid labels, void ignored
            target = torch.as_tensor(np.asarray(labels, np.int64), device=logits.device)
            loss = F.cross_entropy(logits, target.unsqueeze(0), ignore_index=IGNORE_INDEX)
        grads = torch.autograd.grad(loss, coef, allow_unused=True)
    if all(g is None for g in grads):
        raise ValueError(f"{type(model).__name__}: its logits do not depend differentiably on "
                         "the input frame; STAC's gradients (§IV) need a differentiable model")
    y, cb, cr = (np.zeros(c.shape, np.float32) if g is None else g.detach().cpu().numpy()
                 for g, c in zip(grads, coef, strict=True))
    return DCTGradients(y=y, cb=cb, cr=cr, labels=seg.astype(np.uint8),
                        loss=float(loss.detach())), next_state


@contextmanager
def _frozen(model: torch.nn.Module):
    """Parameters with requires_grad off for the duration (restored after): autograd then
    records no weight gradients, the same input gradients."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
