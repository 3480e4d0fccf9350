"""BiSeNet-style two-path segmentation network (Yu et al., ECCV 2018), trained from scratch.

A spatial path (three stride-2 conv-BN-ReLU layers, 1/8 resolution, wide but shallow) keeps
detail; a context path (a light residual backbone down to 1/32, plus global average pooling)
gives a large receptive field. Attention refinement modules (ARM, §3.2: channel attention from
global pooling) refine the 1/16 and 1/32 context features, which are upsampled to 1/8 and
merged with the spatial path by the feature fusion module (FFM, §3.3). Deviation: the paper's
context path is an ImageNet-pretrained Xception39/ResNet-18; no weights can be downloaded
here, so the backbone is a small ResNet-like stack trained from scratch on CamVid.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge.models.base import NUM_CLASSES, StreamingSegmenter


class ConvBNReLU(nn.Sequential):
    """k x k convolution, batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions), strided with a 1x1 projection when needed."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(cin, cout, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(cout))
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.proj is None else self.proj(x)
        return F.relu(self.conv2(self.conv1(x)) + skip)


class AttentionRefinement(nn.Module):
    """ARM: x * sigmoid(conv1x1(global_avg_pool(x))) after a 3x3 conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, 3)
        self.attention = nn.Conv2d(cout, cout, 1)   # the paper's BN dropped: 1x1 input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x * torch.sigmoid(self.attention(F.adaptive_avg_pool2d(x, 1)))


class FeatureFusion(nn.Module):
    """FFM: concatenate both paths, conv-BN-ReLU, then re-weight channels: y + y * att(y)."""

    def __init__(self, cin: int, cout: int, reduction: int = 4) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, 1)
        self.attention = nn.Sequential(nn.Conv2d(cout, cout // reduction, 1), nn.ReLU(inplace=True),
                                       nn.Conv2d(cout // reduction, cout, 1), nn.Sigmoid())

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        y = self.conv(torch.cat([spatial, context], dim=1))
        return y + y * self.attention(F.adaptive_avg_pool2d(y, 1))


class BiSeNet(StreamingSegmenter):
    """Spatial path + context path (ARM at 1/16 and 1/32, global context) fused by FFM."""

    def __init__(self, width: float = 1.0, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.num_classes = num_classes

        def ch(c: int) -> int:
            return max(8, int(round(c * width)))

        sp = ch(64)
        self.spatial = nn.Sequential(ConvBNReLU(3, sp, 7, 2), ConvBNReLU(sp, sp, 3, 2),
                                     ConvBNReLU(sp, 2 * sp, 3, 2), ConvBNReLU(2 * sp, 2 * sp, 1))
        c1, c2, c3, c4 = ch(32), ch(64), ch(128), ch(256)
        self.stem = nn.Sequential(ConvBNReLU(3, c1, 3, 2), ConvBNReLU(c1, c1, 3, 2))   # 1/4
        self.stage8 = nn.Sequential(ResBlock(c1, c2, 2), ResBlock(c2, c2))             # 1/8
        self.stage16 = nn.Sequential(ResBlock(c2, c3, 2), ResBlock(c3, c3))            # 1/16
        self.stage32 = nn.Sequential(ResBlock(c3, c4, 2), ResBlock(c4, c4))            # 1/32
        ctx = 2 * sp
        # no BN on the 1x1 pooled input (batch-1 training and inference must work)
        self.global_context = nn.Sequential(nn.Conv2d(c4, ctx, 1), nn.ReLU(inplace=True))
        self.arm16 = AttentionRefinement(c3, ctx)
        self.arm32 = AttentionRefinement(c4, ctx)
        self.refine16 = ConvBNReLU(ctx, ctx, 3)
        self.refine32 = ConvBNReLU(ctx, ctx, 3)
        self.ffm = FeatureFusion(2 * ctx, 2 * ctx)
        self.head = nn.Sequential(ConvBNReLU(2 * ctx, ctx, 3), nn.Conv2d(ctx, num_classes, 1))

    def step(self, frame: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Per-frame logits at the frame's resolution; the state passes through unused."""
        h, w = frame.shape[-2:]
        x = self.normalize(frame)
        spatial = self.spatial(x)
        f16 = self.stage16(self.stage8(self.stem(x)))
        f32 = self.stage32(f16)
        tail = self.global_context(F.adaptive_avg_pool2d(f32, 1))
        up32 = self.arm32(f32) + tail
        up32 = self.refine32(F.interpolate(up32, size=f16.shape[-2:], mode="nearest"))
        up16 = self.arm16(f16) + up32
        up16 = self.refine16(F.interpolate(up16, size=spatial.shape[-2:], mode="nearest"))
        logits = self.head(self.ffm(spatial, up16))
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits, state


def bisenet(width: float = 1.0, num_classes: int = NUM_CLASSES) -> BiSeNet:
    """BiSeNet-style network; `width` scales every channel count."""
    return BiSeNet(width=width, num_classes=num_classes)
