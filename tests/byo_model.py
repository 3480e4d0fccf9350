"""Test-only "bring your own" models: small deterministic RGB -> logits networks loaded
with `--model byo_model:five_class` (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import torch
from torch import nn


class TinySegNet(nn.Module):
    """RGB in [0, 1] -> logits at half resolution (the wrapper upsamples them)."""

    def __init__(self, classes: int, seed: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 1))
        gen = torch.Generator().manual_seed(seed)  # fixed weights, global RNG untouched
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (0.0 if "bias" in name else 2.0))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.features(rgb - 0.5)  # centred colours: several classes on real frames


def five_class() -> nn.Module:
    """5 classes, fixed seeded weights."""
    return TinySegNet(5, seed=4)


def thirteen_class() -> nn.Module:
    """13 classes: more than CamVid's 11, so labels 11 and 12 (CamVid's void is 11) occur."""
    return TinySegNet(13, seed=15)


def not_a_module() -> str:
    return "a string"


class _GreyMean(nn.Module):
    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return rgb.mean(1)


def three_dim_output() -> nn.Module:
    """Returns (N, H, W): not logits."""
    return _GreyMean()


class _Detached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = five_class()

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.net(rgb.detach())


def detached() -> nn.Module:
    """Logits that do not depend differentiably on the input (STAC cannot use it)."""
    return _Detached()
