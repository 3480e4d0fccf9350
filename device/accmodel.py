"""AccMPEG's AccModel (Du et al., MLSys 2022): per-macroblock quality sensitivity on the device.

A frozen feature extractor and a small convolutional head map an RGB frame to one score in
[0, 1] per 16x16 macroblock (the codec's macroblock grid, ceil(H/16) x ceil(W/16)): how much
the edge model's output depends on that tile. The labels it learns are AccMPEG's
"accuracy gradients": the edge model's loss gradient w.r.t. the input pixels, |dQ/dx|
summed over colour channels and each 16x16 tile, min-max normalised per frame
(`gradient_tiles`). The high-quality mask is the score above a threshold (0.2), cleaned by
a 3x3 opening and closing (`quality_mask`).

Frozen extractor: AccMPEG freezes an ImageNet-pretrained backbone; no ImageNet weights exist
here, so the extractor is the first two stages (stem to 1/4, residual stage to 1/8) of the
shipped model `bisenet`, trained by the project on CamVid: the nearest thing to a
pretrained generic feature extractor in this project, and cheap (about 25 M MACs at
480x360). Its weights are copied into the AccModel's file, so the file stands alone. The
head is trained per edge model (the labels are that model's gradients): one shipped file
per edge model, `weights/accmodel-MODEL.pt` (`weights_for`).
"""

from __future__ import annotations

import copy
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MB = 16  # pixels per macroblock side: one score per macroblock
THRESHOLD = 0.2  # AccMPEG's quality threshold on the normalised score
WEIGHT_DIR = Path(__file__).resolve().parent / "weights"
#: the edge model whose shipped AccModel is the default (stac.schemes.DEFAULT_MODEL)
DEFAULT_EDGE_MODEL = "dabnet"
FORMAT = "stac-accmodel-1"


class AccModelError(ValueError):
    """An AccModel weights file that cannot be read, or a frame it cannot take."""


@dataclass(frozen=True)
class AccModelConfig:
    """The AccModel's architecture: the edge model's `width` (extractor channels) and the
    head's `hidden` channels."""

    width: float = 0.375
    hidden: int = 32
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def _channels(width: float) -> tuple[int, int]:
    """Channels of bisenet's stem and 1/8 stage at `width` (edge.models.bisenet)."""
    return max(8, int(round(32 * width))), max(8, int(round(64 * width)))


class AccModel(nn.Module):
    """Frozen extractor (RGB -> 1/8 features) + trainable head (-> one logit per 16x16 tile)."""

    def __init__(self, config: AccModelConfig = AccModelConfig()) -> None:
        super().__init__()
        from edge.models.base import RGB_MEAN, RGB_STD
        from edge.models.bisenet import ConvBNReLU, ResBlock

        self.config = config
        c1, c2 = _channels(config.width)
        self.register_buffer("rgb_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1))
        self.register_buffer("rgb_std", torch.tensor(RGB_STD).view(1, 3, 1, 1))
        # bisenet's `stem` and `stage8`, same layout so that its weights load as they are
        self.extractor = nn.Sequential(
            nn.Sequential(ConvBNReLU(3, c1, 3, 2), ConvBNReLU(c1, c1, 3, 2)),
            nn.Sequential(ResBlock(c1, c2, 2), ResBlock(c2, c2)))
        h = config.hidden
        self.head = nn.Sequential(
            nn.Conv2d(c2, h, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(h, 1, 1))
        self.freeze()

    def freeze(self) -> None:
        """The extractor's weights never train and its batch norms stay in eval mode."""
        self.extractor.requires_grad_(False)
        self.extractor.eval()

    def train(self, mode: bool = True) -> AccModel:
        super().train(mode)
        self.extractor.eval()
        return self

    @classmethod
    def from_edge_model(cls, model: nn.Module, hidden: int = 32) -> AccModel:
        """An AccModel whose extractor is a frozen copy of `bisenet`'s stem and 1/8 stage."""
        if not (hasattr(model, "stem") and hasattr(model, "stage8")):
            raise AccModelError(f"{type(model).__name__} has no bisenet stem/stage8 to "
                                "take the AccModel's frozen extractor from")
        c1 = model.stem[0][0].out_channels
        width = c1 / 32
        acc = cls(AccModelConfig(width=width, hidden=hidden))
        if _channels(width) != (c1, model.stage8[0].conv1[0].out_channels):
            raise AccModelError(f"cannot infer the width of {type(model).__name__}")
        acc.extractor[0].load_state_dict(copy.deepcopy(model.stem.state_dict()))
        acc.extractor[1].load_state_dict(copy.deepcopy(model.stage8.state_dict()))
        acc.freeze()
        return acc

    def features(self, frame: torch.Tensor) -> torch.Tensor:
        """Frozen 1/8 features of RGB (N, 3, H, W) in [0, 1], H and W multiples of 16."""
        with torch.no_grad():
            return self.extractor((frame - self.rgb_mean) / self.rgb_std)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """(N, 1, H/16, W/16) logits of RGB (N, 3, H, W) in [0, 1], H and W multiples of 16."""
        return self.head(self.features(frame))

    def scores(self, rgb: np.ndarray) -> np.ndarray:
        """Sensitivity in [0, 1] per macroblock, (ceil(H/16), ceil(W/16)) float32, of an RGB
        uint8 frame (H, W, 3); the frame is padded by edge replication as the codec pads."""
        x = pad_frame(to_tensor(rgb))
        with torch.no_grad():
            return torch.sigmoid(self(x))[0, 0].numpy().astype(np.float32)

    def save(self, path: str | Path, card: dict[str, Any] | None = None) -> Path:
        """Write the weights (extractor included) and the architecture; `card` (a dict of
        provenance and numbers) is kept in the file and written beside it as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FORMAT, "width": self.config.width, "hidden": self.config.hidden,
                    "state_dict": self.state_dict(), "card": card or {}}, path)
        if card is not None:
            path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path | None = None) -> AccModel:
        """The AccModel of weights file `path` (None: the shipped weights), in eval mode."""
        path = WEIGHTS if path is None else Path(path)
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
            raise AccModelError(f"cannot read AccModel weights {path}: {e}") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise AccModelError(f"{path} is not an AccModel weights file ({FORMAT})")
        model = cls(AccModelConfig(width=float(blob["width"]), hidden=int(blob["hidden"]),
                                   extra=dict(blob.get("card") or {})))
        try:
            model.load_state_dict(blob["state_dict"])
        except RuntimeError as e:
            raise AccModelError(f"{path}: weights do not fit the AccModel: {e}") from None
        return model.eval()


def weights_for(edge_model: str | None) -> Path:
    """The shipped AccModel file trained against edge model `edge_model` (a registry name;
    None: the default model's), card beside it; the file may not exist for every model."""
    return WEIGHT_DIR / f"accmodel-{edge_model or DEFAULT_EDGE_MODEL}.pt"


#: the shipped weights of the default edge model (trained by `stac-sim accmpeg train`)
WEIGHTS = weights_for(None)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1]."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise AccModelError(f"expected an RGB uint8 frame (H, W, 3), got {rgb.shape} {rgb.dtype}")
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def pad_frame(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) padded at the bottom/right by edge replication to multiples of 16."""
    h, w = x.shape[-2:]
    ph, pw = -h % MB, -w % MB
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def tile_sums(values: np.ndarray) -> np.ndarray:
    """(H, W) -> (ceil(H/16), ceil(W/16)) sums over each 16x16 macroblock (zero padding)."""
    h, w = values.shape
    padded = np.pad(values, ((0, -h % MB), (0, -w % MB)))
    return padded.reshape(padded.shape[0] // MB, MB, padded.shape[1] // MB, MB).sum((1, 3))


def normalise(tiles: np.ndarray) -> np.ndarray:
    """Min-max normalised to [0, 1] (all zeros when the tiles are constant)."""
    tiles = np.asarray(tiles, np.float64)
    span = tiles.max() - tiles.min()
    return ((tiles - tiles.min()) / span if span > 0 else np.zeros_like(tiles)).astype(np.float32)


def gradient_tiles(model: nn.Module, rgb: np.ndarray) -> np.ndarray:
    """AccMPEG's label of one frame: |d Q_F / d x| of edge `model` (cross-entropy against its
    own argmax, STAC §IV-B) summed over channels and each 16x16 tile, min-max normalised."""
    from edge.models.base import class_labels

    x = to_tensor(rgb).requires_grad_(True)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        logits, _ = model.step(x, model.initial_state())
        target = torch.from_numpy(class_labels(logits).astype(np.int64)).unsqueeze(0)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, target), x)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return normalise(tile_sums(grad[0].abs().sum(0).numpy()))


def open_close(mask: np.ndarray) -> np.ndarray:
    """A 3x3 binary opening (drops isolated tiles) then closing (fills one-tile holes), as
    AccMPEG post-processes its mask; outside the frame never counts (OpenCV's default)."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    m = cv2.morphologyEx(np.asarray(mask, np.uint8), cv2.MORPH_OPEN, kernel)
    return cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel).astype(bool)


def quality_mask(scores: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """The high-quality macroblocks: scores above `threshold`, 3x3 opened then closed."""
    return open_close(np.asarray(scores) > threshold)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
