"""Bring-your-own segmentation models behind the streaming interface.

A user's network is any `torch.nn.Module` mapping a float RGB batch (N, 3, H, W) in [0, 1]
to class logits (N, C, h, w), with any number of classes C and any output resolution: a
TorchScript file (`torch.jit.load`) or `module:function`, a function returning the module.
`ExternalSegmenter` wraps it as a stateless (per-frame) `StreamingSegmenter`: no input
normalisation is added (the module does its own), and the logits are upsampled bilinearly
to the frame's size. The wrapper stays differentiable with respect to the frame whenever
the module is, which STAC's gradients (§IV) need.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge.models.base import ModelError, StreamingSegmenter

#: `package.module:function`, the form of a user's model factory.
CALLABLE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
PROBE_SIZE = (64, 64)  # (H, W) of the frame that reads the class count off a new module


class ExternalSegmenter(StreamingSegmenter):
    """A user's RGB -> logits module as a stateless streaming model (logits at frame size).

    `identity` names where the network came from (the spec and a hash of its file) so that
    caches keyed on the model (ground truth) tell two external models apart.
    """

    streaming = False

    def __init__(self, module: nn.Module, spec: str, identity: str) -> None:
        super().__init__()
        self.module = module
        self.spec = spec
        self.identity = identity
        self.eval()  # inference: batch norm statistics, dropout off
        self.num_classes = self._probe_classes()

    def _probe_classes(self) -> int:
        """C of the module's (N, C, h, w) logits on a grey frame; checks the output's form."""
        frame = torch.full((1, 3, *PROBE_SIZE), 0.5)
        with torch.no_grad():
            logits = self._logits(frame)
        if logits.shape[1] < 1:
            raise ModelError(f"model {self.spec!r}: logits have no classes "
                                     f"(shape {tuple(logits.shape)})")
        if logits.shape[1] > 256:  # label maps travel as 8-bit PNGs (stac.codec.labels)
            raise ModelError(f"model {self.spec!r}: {logits.shape[1]} classes; at most "
                                     "256 fit the 8-bit label maps")
        return int(logits.shape[1])

    def _logits(self, frame: torch.Tensor) -> torch.Tensor:
        try:
            logits = self.module(frame)
        except Exception as exc:  # the user's code: report which model failed, and why
            raise ModelError(
                f"model {self.spec!r} failed on a float RGB batch {tuple(frame.shape)} "
                f"in [0, 1]: {type(exc).__name__}: {exc}") from exc
        if not isinstance(logits, torch.Tensor) or logits.dim() != 4 \
                or logits.shape[0] != frame.shape[0] or not logits.is_floating_point():
            got = (f"{type(logits).__name__} {tuple(logits.shape)} {logits.dtype}"
                   if isinstance(logits, torch.Tensor) else type(logits).__name__)
            raise ModelError(
                f"model {self.spec!r} must return float logits (N, C, h, w) for a batch "
                f"{tuple(frame.shape)}; got {got}")
        return logits

    def step(self, frame: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Logits (N, C, H, W) of the module, upsampled bilinearly to the frame; no state."""
        logits = self._logits(frame)
        if logits.shape[-2:] != frame.shape[-2:]:
            logits = F.interpolate(logits, size=frame.shape[-2:], mode="bilinear",
                                   align_corners=False)
        return logits, None


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (a zip holding `constants.pkl`), as opposed
    to a `torch.save`d checkpoint."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_torchscript(path: str | Path) -> ExternalSegmenter:
    """A TorchScript file (`torch.jit.save`) wrapped as a streaming model, on the CPU."""
    path = Path(path)
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: cannot load TorchScript ({exc})") from exc
    return ExternalSegmenter(module, str(path), f"torchscript:{_file_hash(path)}")


def load_callable(spec: str) -> ExternalSegmenter:
    """`module:function`: import the module, call the function, wrap the `nn.Module` it returns."""
    if not CALLABLE_SPEC.match(spec):
        raise ModelError(f"{spec!r} is not of the form package.module:function")
    module_name, func_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"model {spec!r}: cannot import {module_name!r} ({exc})") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ModelError(f"model {spec!r}: {module_name!r} has no function {func_name!r}")
    net = func()
    if not isinstance(net, nn.Module):
        raise ModelError(f"model {spec!r}: {func_name}() returned "
                                 f"{type(net).__name__}, not a torch.nn.Module")
    source = getattr(module, "__file__", None)
    identity = f"callable:{spec}:{_file_hash(Path(source)) if source else 'builtin'}"
    return ExternalSegmenter(net.to("cpu"), spec, identity)
