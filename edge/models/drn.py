"""DRN-D-22: dilated residual network for segmentation (Yu, Koltun, Funkhouser, CVPR 2017).

Output stride 8: the last two residual stages keep the 1/8 resolution and dilate by 2 and 4
instead of striding (§3 of the paper); "degridding" (§4, arch D) replaces the first max-pool
with strided convolutions (`layer0`-`layer2`) and appends two non-residual convolution layers
at decreasing dilation (`layer7` d=2, `layer8` d=1) to remove gridding artifacts.

The module layout follows the published segmentation wrapper (DRNSeg): `base` is the trunk as
an `nn.Sequential` of layer0..layer8, `seg` a 1x1 classifier and `up` a fixed bilinear
transposed convolution (x8), so at width 1.0 the published `drn_d_22` segmentation state dict
(`base.0.0.weight`, ..., `seg.weight`, `up.weight`) loads by name. `width` scales every
channel count so that a narrow variant trains on a CPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge.models.base import NUM_CLASSES, StreamingSegmenter

#: channels of layer0..layer8's output at width 1.0 (layer0 and layer1 share 16)
DRN_D_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
#: blocks (or convolutions, for the plain layers) per stage of DRN-D-22
DRN_D_22_LAYERS = (1, 1, 2, 2, 2, 2, 1, 1)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection; `dilation` per convolution."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation[0],
                               dilation=dilation[0], bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation[1], dilation=dilation[1],
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + residual)


def _conv_layers(inplanes: int, planes: int, convs: int, stride: int = 1,
                 dilation: int = 1) -> nn.Sequential:
    """Plain conv-BN-ReLU layers (arch D's degridding stages), strided on the first only."""
    modules: list[nn.Module] = []
    for i in range(convs):
        modules += [nn.Conv2d(inplanes if i == 0 else planes, planes, 3,
                              stride=stride if i == 0 else 1, padding=dilation,
                              dilation=dilation, bias=False),
                    nn.BatchNorm2d(planes), nn.ReLU(inplace=True)]
    return nn.Sequential(*modules)


def _residual_layer(inplanes: int, planes: int, blocks: int, stride: int = 1,
                    dilation: int = 1) -> nn.Sequential:
    """Residual stage: strided (new level) or dilated at the same resolution (§3)."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes))
    first = (1, 1) if dilation == 1 else (dilation, dilation)
    layers = [BasicBlock(inplanes, planes, stride, downsample, dilation=first)]
    layers += [BasicBlock(planes, planes, dilation=(dilation, dilation)) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _bilinear_up_weight(channels: int, factor: int) -> torch.Tensor:
    """Fixed bilinear kernel of a depthwise transposed convolution upsampling by `factor`."""
    size = 2 * factor
    centre = (size - 1) / 2
    axis = 1 - torch.abs(torch.arange(size, dtype=torch.float32) - centre) / factor
    kernel = axis[:, None] * axis[None, :]
    return kernel.expand(channels, 1, size, size).clone()


class DRNSeg(StreamingSegmenter):
    """DRN-D-22 trunk + 1x1 classifier + x8 bilinear upsampling (per-frame, stateless)."""

    def __init__(self, width: float = 1.0, num_classes: int = NUM_CLASSES,
                 layers: tuple[int, ...] = DRN_D_22_LAYERS, input_scale: float = 1.0) -> None:
        super().__init__()
        if width <= 0 or not 0 < input_scale <= 1:
            raise ValueError(f"need width > 0 and 0 < input_scale <= 1, got {width}, "
                             f"{input_scale}")
        self.num_classes = num_classes
        self.input_scale = input_scale
        c = [max(4, int(round(ch * width))) for ch in DRN_D_CHANNELS]
        self.channels = tuple(c)
        self.base = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, c[0], 7, padding=3, bias=False),
                          nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True)),   # layer0
            _conv_layers(c[0], c[0], layers[0]),                          # layer1
            _conv_layers(c[0], c[1], layers[1], stride=2),                # layer2 (1/2)
            _residual_layer(c[1], c[2], layers[2], stride=2),             # layer3 (1/4)
            _residual_layer(c[2], c[3], layers[3], stride=2),             # layer4 (1/8)
            _residual_layer(c[3], c[4], layers[4], dilation=2),           # layer5
            _residual_layer(c[4], c[5], layers[5], dilation=4),           # layer6
            _conv_layers(c[5], c[6], layers[6], dilation=2),              # layer7 (degrid)
            _conv_layers(c[6], c[7], layers[7], dilation=1),              # layer8 (degrid)
        )
        self.seg = nn.Conv2d(c[7], num_classes, 1, bias=True)
        nn.init.normal_(self.seg.weight, 0.0, math.sqrt(2.0 / num_classes))
        nn.init.zeros_(self.seg.bias)
        self.up = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=4,
                                     groups=num_classes, bias=False)
        self.up.weight.data.copy_(_bilinear_up_weight(num_classes, 8))
        self.up.weight.requires_grad_(False)
        for m in self.base.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def step(self, frame: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Per-frame logits at the frame's resolution; the state passes through unused."""
        h, w = frame.shape[-2:]
        x = self.normalize(frame)
        if self.input_scale != 1.0:   # run the trunk on a downscaled frame (CPU budget)
            x = F.interpolate(x, scale_factor=self.input_scale, mode="bilinear",
                              align_corners=False, antialias=True)
        logits = self.up(self.seg(self.base(x)))
        if logits.shape[-2:] != (h, w):   # sizes not divisible by 8
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits, state


def drn_d_22(width: float = 1.0, num_classes: int = NUM_CLASSES,
             input_scale: float = 1.0) -> DRNSeg:
    """DRN-D-22 segmentation network; `width` scales the channels (1.0 = published) and
    `input_scale` < 1 runs it on a downscaled frame, logits upsampled back to the frame."""
    return DRNSeg(width=width, num_classes=num_classes, input_scale=input_scale)
