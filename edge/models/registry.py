"""Registry of edge models by name, loading of the project's checkpoints, and the one
resolver of `--model` specs (`resolve_model`).

A checkpoint is a `torch.save`d dict: {"name", "config", "state_dict", "card"}, where
`config` holds the builder's keyword arguments and `card` the model card's numbers
(resolution, val mIoU, data, command, seed, epochs, wall time). Shipped checkpoints live
in `edge/checkpoints/NAME.pt` next to `NAME.md`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edge.models.base import ModelError, StreamingSegmenter
from edge.models.external import CALLABLE_SPEC, is_torchscript, load_callable, load_torchscript
from stac.modelspec import MODEL_SPEC_HELP  # noqa: F401 (re-exported)

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"

# name -> "module:builder"; builders take keyword arguments and return a StreamingSegmenter.
_BUILDERS: dict[str, str] = {
    "drn_d_22": "edge.models.drn:drn_d_22",
    "bisenet": "edge.models.bisenet:bisenet",
    "dabnet": "edge.models.dabnet:dabnet",
    "streamdeq": "edge.models.streamdeq:streamdeq",
    "adaptive_propagation": "edge.models.adaptive_propagation:adaptive_propagation",
    "streamformer": "edge.models.streamformer:streamformer",
}

UNTRAINED_PREFIX = "untrained:"
#: The forms `--model` (and `resolve_model`) accept, for help texts and error messages.

@dataclass(frozen=True)
class ModelInfo:
    """One row of `stac-sim models list`."""

    name: str
    checkpoint: Path | None
    card: dict[str, Any]


def _builder(name: str):
    try:
        target = _BUILDERS[name]
    except KeyError:
        known = ", ".join(sorted(_BUILDERS))
        raise ModelError(f"unknown model {name!r}; known models: {known}") from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def build_model(name: str, **config: Any) -> StreamingSegmenter:
    """An untrained model of the named architecture (for training, or mechanics-only tests)."""
    return _builder(name)(**config)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or not {"name", "config", "state_dict"} <= ckpt.keys():
        raise ModelError(f"{path}: not a STAC-sim checkpoint (needs name, config, state_dict)")
    return ckpt


def checkpoint_path(name_or_path: str | Path) -> Path:
    """The checkpoint file of a registered name (its shipped checkpoint) or a path."""
    path = Path(name_or_path)
    return CHECKPOINT_DIR / f"{name_or_path}.pt" if not path.suffix else path


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> StreamingSegmenter:
    """A trained model in eval mode: a registered name with a shipped checkpoint, or a path."""
    path = checkpoint_path(name_or_path)
    if str(name_or_path) in _BUILDERS and not path.exists():
        raise ModelError(f"model {name_or_path!r} has no shipped checkpoint at {path}")
    if not path.exists():
        if not Path(name_or_path).suffix and str(name_or_path) not in _BUILDERS:
            known = ", ".join(sorted(_BUILDERS))
            raise ModelError(f"unknown model {str(name_or_path)!r}; known models: {known} "
                             "(or a checkpoint path, or 'untrained:NAME')")
        raise ModelError(f"{path}: no such checkpoint")
    ckpt = _read_checkpoint(path)
    model = build_model(ckpt["name"], **ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    model.card = dict(ckpt.get("card", {}))
    return model.to(device).eval()


def save_checkpoint(model: StreamingSegmenter, name: str, config: dict[str, Any],
                    path: Path, card: dict[str, Any] | None = None) -> None:
    """Write a checkpoint that `load_model(path)` reads back."""
    torch.save({"name": name, "config": dict(config), "state_dict": model.state_dict(),
                "card": dict(card or {})}, path)


def list_models() -> list[ModelInfo]:
    """Every registered architecture, with its shipped checkpoint and card where there is one."""
    rows = []
    for name in sorted(_BUILDERS):
        path = CHECKPOINT_DIR / f"{name}.pt"
        card = _read_checkpoint(path).get("card", {}) if path.exists() else {}
        rows.append(ModelInfo(name=name, checkpoint=path if path.exists() else None, card=card))
    return rows


def resolve_model(spec: str) -> StreamingSegmenter:
    """The model a `--model` spec names, in eval mode on the CPU (see `MODEL_SPEC_HELP`).

    In order: `untrained:NAME` (an untrained registered architecture: mechanics only,
    timing, queueing, bytes, never accuracy), a shipped name, an existing file (TorchScript
    archive, else a project checkpoint), `package.module:function`. Anything else is a
    `ModelError` listing the shipped names and the accepted forms.
    """
    spec = str(spec)
    if spec.startswith(UNTRAINED_PREFIX):
        return build_model(spec[len(UNTRAINED_PREFIX):]).eval()
    if spec in _BUILDERS:
        return load_model(spec)
    path = Path(spec)
    if path.is_file():
        return load_torchscript(path) if is_torchscript(path) else load_model(path)
    if CALLABLE_SPEC.match(spec):
        return load_callable(spec)
    known = ", ".join(n for n in sorted(_BUILDERS) if (CHECKPOINT_DIR / f"{n}.pt").is_file())
    what = f"{path}: no such checkpoint or TorchScript file" if path.suffix else \
        f"unknown model {spec!r}"
    raise ModelError(f"{what}; --model takes {MODEL_SPEC_HELP}; known models (shipped "
                     f"checkpoints): {known}")
