"""DABNet: depth-wise asymmetric bottleneck network (Li, Xiong and Wang, BMVC 2019), from scratch.

A per-frame network that stays at 1/8 resolution and gets its receptive field from dilation
instead of depth (§3.2, Fig. 3): an initial block of 3x3 convolutions to 1/2, a downsampling
block to 1/4, `blocks[0]` DAB modules (dilation 2), a downsampling block to 1/8, `blocks[1]` DAB
modules (the paper: dilations 4, 4, 8, 8, 16, 16), a 1x1 classifier and bilinear upsampling x8.
Each stage's output is concatenated with the input image average-pooled to its resolution and
with the stage's own first feature map. A DAB module (§3.1, Fig. 2c) reduces channels with a
3x3 convolution to c/2, runs two depth-wise asymmetric branches (3x1 then 1x3; the second
dilated), sums them and projects back to c with a 1x1 convolution, plus the identity. The
paper trains it from scratch (0.76 M parameters, 66.4 % CamVid test mIoU at 360x480).
`PAPER_CONFIG` builds the paper's network; the default `DEFAULT_CONFIG` is narrower so that a
frame takes about as long on one CPU thread as the other per-frame models (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge.models.base import NUM_CLASSES, StreamingSegmenter

PAPER_DILATIONS = (4, 4, 8, 8, 16, 16)
#: the paper's network (Li et al. 2019: 0.76 M parameters, 3.4 GMACs per 360x480 frame)
PAPER_CONFIG = {"channels": (32, 64, 128), "blocks": (3, 6), "stem_convs": 3,
                "dilations": PAPER_DILATIONS}
#: the default, sized for one CPU thread (docs/models_perframe.md): a single 16-channel stem
#: convolution, 24 and 64 channels, one DAB module at 1/4 and the paper's six at 1/8
DEFAULT_CONFIG = {"channels": (16, 24, 64), "blocks": (1, 6), "stem_convs": 1,
                  "dilations": PAPER_DILATIONS}


class BNPReLU(nn.Sequential):
    """Batch norm then PReLU (one slope per channel), DABNet's activation everywhere."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.BatchNorm2d(channels, eps=1e-3), nn.PReLU(channels))


class ConvBNPReLU(nn.Sequential):
    """Convolution (no bias), batch norm, PReLU; `groups` = channels makes it depth-wise."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], stride: int = 1,
                 dilation: tuple[int, int] = (1, 1), groups: int = 1) -> None:
        padding = tuple(d * (k // 2) for k, d in zip(kernel, dilation, strict=True))
        super().__init__(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding,
                                   dilation=dilation, groups=groups, bias=False),
                         BNPReLU(cout))


class DABModule(nn.Module):
    """Depth-wise asymmetric bottleneck (Fig. 2c): 3x3 to c/2, plain and dilated depth-wise
    3x1/1x3 branches summed, 1x1 back to c, plus the input."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        half = channels // 2
        d = dilation
        self.pre = BNPReLU(channels)
        self.reduce = ConvBNPReLU(channels, half, (3, 3))
        self.local = nn.Sequential(ConvBNPReLU(half, half, (3, 1), groups=half),
                                   ConvBNPReLU(half, half, (1, 3), groups=half))
        self.context = nn.Sequential(ConvBNPReLU(half, half, (3, 1), dilation=(d, 1), groups=half),
                                     ConvBNPReLU(half, half, (1, 3), dilation=(1, d), groups=half))
        self.post = BNPReLU(half)
        self.project = nn.Conv2d(half, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(self.pre(x))
        return self.project(self.post(self.local(y) + self.context(y))) + x


class Downsample(ConvBNPReLU):
    """A stride-2 3x3 convolution, BN, PReLU. Deviation: the paper (after ENet) concatenates a
    2x2 max-pool of the input when channels grow; on one CPU thread the pool costs more time
    than the convolution channels it saves, so the convolution makes every output channel."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, (3, 3), stride=2)


def _halve(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool, stride 2 (the paper's input injection): ceil(H/2) x ceil(W/2), the
    size of every stride-2 convolution's output here."""
    return F.avg_pool2d(x, 3, stride=2, padding=1)


class DABNet(StreamingSegmenter):
    """DABNet: initial block to 1/2, DAB stages at 1/4 and 1/8 with input injections, 1x1
    classifier at 1/8, bilinear x8."""

    def __init__(self, channels: tuple[int, int, int] = DEFAULT_CONFIG["channels"],
                 blocks: tuple[int, int] = DEFAULT_CONFIG["blocks"],
                 stem_convs: int = DEFAULT_CONFIG["stem_convs"],
                 dilations: tuple[int, ...] = DEFAULT_CONFIG["dilations"],
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        c0, c1, c2 = (int(c) for c in channels)
        if min(c0, c1, c2) < 4 or c1 % 2 or c2 % 2:
            raise ValueError(f"channels must be >= 4 (even for the DAB stages), got "
                             f"{tuple(channels)}")
        if len(blocks) != 2 or min(blocks) < 1 or stem_convs < 1:
            raise ValueError(f"need two block counts >= 1 and stem_convs >= 1, got {blocks}, "
                             f"{stem_convs}")
        if len(dilations) != blocks[1]:
            raise ValueError(f"dilations {tuple(dilations)} must give one dilation per block of "
                             f"the 1/8 stage ({blocks[1]})")
        self.num_classes = num_classes
        self.stem = nn.Sequential(ConvBNPReLU(3, c0, (3, 3), stride=2),
                                  *(ConvBNPReLU(c0, c0, (3, 3)) for _ in range(stem_convs - 1)))
        self.stem_act = BNPReLU(c0 + 3)
        self.down1 = Downsample(c0 + 3, c1)
        self.stage1 = nn.Sequential(*(DABModule(c1, 2) for _ in range(blocks[0])))
        self.stage1_act = BNPReLU(2 * c1 + 3)
        self.down2 = Downsample(2 * c1 + 3, c2)
        self.stage2 = nn.Sequential(*(DABModule(c2, int(d)) for d in dilations))
        self.stage2_act = BNPReLU(2 * c2 + 3)
        self.classifier = nn.Conv2d(2 * c2 + 3, num_classes, 1)

    def step(self, frame: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Per-frame logits at the frame's resolution; the state passes through unused."""
        h, w = frame.shape[-2:]
        x = self.normalize(frame)
        d2 = _halve(x)
        d4 = _halve(d2)
        d8 = _halve(d4)
        f2 = self.stem_act(torch.cat([self.stem(x), d2], dim=1))
        f4 = self.down1(f2)
        f4 = self.stage1_act(torch.cat([self.stage1(f4), f4, d4], dim=1))
        f8 = self.down2(f4)
        f8 = self.stage2_act(torch.cat([self.stage2(f8), f8, d8], dim=1))
        logits = self.classifier(f8)
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits, state


def dabnet(channels: tuple[int, int, int] = DEFAULT_CONFIG["channels"],
           blocks: tuple[int, int] = DEFAULT_CONFIG["blocks"],
           stem_convs: int = DEFAULT_CONFIG["stem_convs"],
           dilations: tuple[int, ...] = DEFAULT_CONFIG["dilations"],
           num_classes: int = NUM_CLASSES) -> DABNet:
    """DABNet; the defaults are DEFAULT_CONFIG (CPU-sized), `dabnet(**PAPER_CONFIG)` the paper's."""
    return DABNet(channels=tuple(channels), blocks=tuple(blocks), stem_convs=stem_convs,
                  dilations=tuple(dilations), num_classes=num_classes)
