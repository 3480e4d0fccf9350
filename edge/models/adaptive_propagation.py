"""Adaptive feature propagation with low-latency scheduling (Li, Shi, Lin, CVPR 2018).

A per-frame "basic network" is split into a cheap lower part Sl and an expensive higher part
Sh (§3.1). On every frame Sl gives low-level features F_l. A key-frame selector predicts the
segmentation deviation from the previous key frame out of the low-level feature difference
(§3.2); above a threshold the frame becomes a key frame. Non-key frames propagate the key
frame's high-level features F_h by a spatially variant convolution whose softmax-normalised
H_K x H_K kernels are predicted per location from both frames' low-level features (Eq. 1,
§3.3), and fuse them with the current frame's low-level features adapted by AdaptNet.

Low-latency scheduling (§3.4): a key frame's output comes from the fast track (propagation);
its propagated features become the cached key features at once, and the slow track Sh runs
"in the background" and replaces the cache when done. In this sans-IO model the background
is time-sliced: Sh's stages are split into `slow_track_frames` = k chunks, one chunk runs at
the end of each step starting with the key frame's, and the exact features are adopted into
the cache after the k-th chunk, i.e. they serve frames from t + k on. While a slow track is in
flight no new key frame is started.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edge.models.base import IGNORE_INDEX, NUM_CLASSES, ModelCost, StreamingSegmenter
from edge.models.drn import BasicBlock

#: training stages (§4): the basic network on stills first, then, with it frozen, the
#: propagation module (kernel predictor, AdaptNet, fusion) and the key-frame selector on clips.
STAGES = ("basic", "propagation")


def _res_block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> BasicBlock:
    """A DRN/ResNet basic block (projection shortcut when the shape changes)."""
    down = None
    if stride != 1 or c_in != c_out:
        down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                             nn.BatchNorm2d(c_out))
    return BasicBlock(c_in, c_out, stride, down, dilation=(dilation, dilation))


def _conv(c_in: int, c_out: int, k: int = 3, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, padding=k // 2)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class KeyFrameSelector(nn.Module):
    """Predicts devS(k, t), the fraction of pixels whose label changed since the key frame,
    from low-level features (§3.2, §4): reduce both, subtract, conv, global pool, FC."""

    def __init__(self, c_low: int, width: int) -> None:
        super().__init__()
        self.reduce = _conv(c_low, width)
        self.conv = _conv(width, width)
        self.fc = nn.Linear(width, 1)

    def forward(self, key_low: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        diff = self.reduce(low) - self.reduce(key_low)
        pooled = self.conv(diff).mean(dim=(2, 3))
        return torch.sigmoid(self.fc(pooled))[:, 0]


class KernelPredictor(nn.Module):
    """Per-location H_K x H_K propagation kernels from both frames' low-level features (§3.3):
    three convolutions interlaced with ReLU, softmax over the H_K^2 weights."""

    def __init__(self, c_low: int, width: int, kernel: int) -> None:
        super().__init__()
        self.reduce = _conv(c_low, width)
        self.conv = _conv(2 * width, width)
        self.out = nn.Conv2d(width, kernel * kernel, 1)

    def forward(self, key_low: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        both = torch.cat([self.reduce(key_low), self.reduce(low)], dim=1)
        return torch.softmax(self.out(self.conv(both)), dim=1)


def spatially_variant_conv(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 1: F_t(l, i, j) = sum_{u,v} W_ij(u, v) F_k(l, i-u, j-v), kernels shared by channels.

    `weights` is (N, H_K^2, H, W); channel k = a * H_K + b weights the neighbour at offset
    (a - Δ, b - Δ) (Eq. 1 with the kernel relabelled, which a learned kernel absorbs); zero
    padding at the borders. One multiply-add over the whole map per offset (no im2col copy).
    """
    n, c, h, w = features.shape
    k2 = weights.shape[1]
    k = int(round(k2 ** 0.5))
    if k * k != k2 or weights.shape[0] != n or weights.shape[-2:] != (h, w):
        raise ValueError(f"kernel weights of shape {tuple(weights.shape)} do not fit features "
                         f"of shape {tuple(features.shape)}")
    pad = k // 2
    padded = F.pad(features, (pad, pad, pad, pad))
    out = features.new_zeros(features.shape)
    for a in range(k):
        for b in range(k):
            out = torch.addcmul(out, padded[:, :, a:a + h, b:b + w],
                                weights[:, a * k + b:a * k + b + 1])
    return out


@dataclass(frozen=True)
class SlowTrack:
    """Sh running in the background for key frame `frame`: `features` after `stage` of its
    stages; `chunks` lists the stage ranges still to run, one per coming step."""

    frame: int
    features: torch.Tensor
    chunks: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PropagationState:
    """Cached key-frame features and the schedule's bookkeeping (all tensors detached)."""

    frame: int                      # index of the frame the next step receives
    key_frame: int                  # frame whose features are cached (exact or fast-track)
    key_low: torch.Tensor
    key_high: torch.Tensor
    slow: SlowTrack | None = None
    #: what the last step did: "full" (Sh on the critical path), "fast-key" (key frame via
    #: the fast track, slow track started) or "propagated"; and its predicted deviation.
    last_kind: str = "full"
    last_deviation: float = 0.0


class AdaptivePropagation(StreamingSegmenter):
    """Basic network Sl + Sh + classifier with adaptive key frames and feature propagation.

    `threshold` is the predicted-deviation threshold for a new key frame; `key_interval`,
    when set, replaces the selector by a fixed schedule (the paper's "fix schedule");
    `low_latency` turns on §3.4's scheduling with the slow track spread over
    `slow_track_frames` steps.
    """

    streaming = True

    def __init__(self, low_channels: int = 64, high_channels: int = 96,
                 feature_channels: int = 64, high_blocks: int = 6, side_width: int = 32,
                 kernel: int = 9, num_classes: int = NUM_CLASSES, threshold: float = 0.2,
                 key_interval: int | None = None, low_latency: bool = True,
                 slow_track_frames: int = 6, stage: str = "basic") -> None:
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.stage = stage
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a fraction of pixels in [0, 1], got {threshold}")
        if key_interval is not None and key_interval < 1:
            raise ValueError(f"key_interval must be >= 1, got {key_interval}")
        if kernel % 2 == 0:
            raise ValueError(f"kernel size H_K must be odd, got {kernel}")
        self.num_classes = num_classes
        self.threshold = threshold
        self.key_interval = key_interval
        self.low_latency = low_latency
        c = low_channels
        # Sl: to 1/8 resolution (the paper splits ResNet-101 at conv4_3, ~1/6 of the time).
        self.lower = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, c // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c // 2),
            nn.ReLU(),
            _res_block(c // 2, c // 2), _res_block(c // 2, c, stride=2))
        # Sh: dilated blocks at 1/8 (output stride 8), then a 1x1 projection to F_h.
        dilations = [2, 2, 4, 4, 2, 1] + [1] * max(0, high_blocks - 6)
        stages: list[nn.Module] = [_res_block(c if i == 0 else high_channels, high_channels,
                                              dilation=dilations[i])
                                   for i in range(high_blocks)]
        stages.append(nn.Sequential(nn.Conv2d(high_channels, feature_channels, 1, bias=False),
                                    nn.BatchNorm2d(feature_channels), nn.ReLU()))
        self.higher = nn.ModuleList(stages)
        self.classifier = nn.Conv2d(feature_channels, num_classes, 1)
        self.selector = KeyFrameSelector(c, side_width)
        self.kernels = KernelPredictor(c, side_width, kernel)
        self.adapt = nn.Sequential(_conv(c, side_width), _conv(side_width, side_width),
                                   _conv(side_width, side_width))
        self.fuse = _conv(side_width + feature_channels, feature_channels)
        if not 1 <= slow_track_frames <= high_blocks:
            raise ValueError(f"slow_track_frames must be in 1..{high_blocks} (Sh's blocks), "
                             f"got {slow_track_frames}")
        # Sh's blocks split into k near-equal chunks; the cheap projection joins the last.
        bounds = torch.linspace(0, high_blocks, slow_track_frames + 1).round().long().tolist()
        bounds[-1] = len(self.higher)
        self.slow_chunks = tuple(zip(bounds[:-1], bounds[1:], strict=True))

    # --- the parts of the pipeline --------------------------------------------------------
    def low_features(self, frame: torch.Tensor) -> torch.Tensor:
        """F_l = Sl(frame)."""
        return self.lower(self.normalize(frame))

    def high_features(self, low: torch.Tensor, start: int = 0,
                      stop: int | None = None) -> torch.Tensor:
        """Sh's stages [start, stop) applied to `low` (all of Sh by default)."""
        for stage in self.higher[start:stop]:
            low = stage(low)
        return low

    def segment(self, high: torch.Tensor, size: torch.Size, frozen: bool = False
                ) -> torch.Tensor:
        """Pixel-wise classification of high-level (or fused) features, upsampled to `size`
        (`frozen`: without gradients to the classifier's weights)."""
        w, b = self.classifier.weight, self.classifier.bias
        if frozen:
            w, b = w.detach(), b.detach()
        return F.interpolate(F.conv2d(high, w, b), size=size, mode="bilinear",
                             align_corners=False)

    def propagate(self, key_low: torch.Tensor, key_high: torch.Tensor,
                  low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adaptive propagation (§3.3): (propagated F_h, F_h fused with AdaptNet(F_l))."""
        high = spatially_variant_conv(key_high, self.kernels(key_low, low))
        return high, self.fuse(torch.cat([self.adapt(low), high], dim=1))

    def full(self, frame: torch.Tensor) -> torch.Tensor:
        """The basic network's per-frame logits (Sl + Sh + classifier)."""
        return self.segment(self.high_features(self.low_features(frame)), frame.shape[-2:])

    # --- training (§4) ---------------------------------------------------------------------
    def train(self, mode: bool = True) -> AdaptivePropagation:
        """In the propagation stage the basic network stays in eval mode (frozen BN stats)."""
        super().train(mode)
        if self.stage == "propagation":
            for part in (self.lower, self.higher, self.classifier):
                part.eval()
        return self

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """Per-frame use: the basic network (the first frame of a stream)."""
        if self.training and self.stage == "propagation":
            raise RuntimeError("adaptive propagation's 'propagation' stage trains on clips "
                               "(key frame + later frame), not stills")
        return super().forward(frame)

    def clip_loss(self, frames: torch.Tensor, labels: torch.Tensor,
                  weight: torch.Tensor | None) -> torch.Tensor:
        """The trainer's clip hook. Stage "basic": cross-entropy of the basic network on every
        frame. Stage "propagation" (§4): frame 0 is the key frame and a random later frame l
        (2..T-1 apart where the clip allows) the current one; cross-entropy of its propagated
        + fused prediction, plus an L1 loss of the selector's predicted deviation against the
        frozen basic network's actual label change between the two frames (§3.2)."""
        n, t = frames.shape[:2]
        if self.stage == "basic":
            logits = self.full(frames.flatten(0, 1))
            return F.cross_entropy(logits, labels.flatten(0, 1), weight=weight,
                                   ignore_index=IGNORE_INDEX)
        if t < 2:
            raise ValueError("the propagation stage needs clips of at least 2 frames")
        lo = min(2, t - 1)
        gap = int(torch.randint(lo, t, ()))
        key, cur = frames[:, 0], frames[:, gap]
        size = frames.shape[-2:]
        with torch.no_grad():
            key_low, low = self.low_features(key), self.low_features(cur)
            key_high = self.high_features(key_low)
            key_label = self.segment(key_high, size).argmax(1)
            cur_label = self.segment(self.high_features(low), size).argmax(1)
            target = (key_label != cur_label).float().mean(dim=(1, 2))
        _, fused = self.propagate(key_low, key_high, low)
        loss = F.cross_entropy(self.segment(fused, size, frozen=True), labels[:, gap],
                               weight=weight, ignore_index=IGNORE_INDEX)
        deviation = self.selector(key_low, low)
        return loss + F.l1_loss(deviation, target)

    # --- the streaming interface ----------------------------------------------------------
    def _is_key(self, state: PropagationState, deviation: torch.Tensor) -> bool:
        if state.slow is not None:
            return False  # a key frame is already being computed in the background
        if self.key_interval is not None:
            return state.frame - state.key_frame >= self.key_interval
        return bool((deviation > self.threshold).any())  # a batch shares one schedule

    def step(self, frame: torch.Tensor, state: PropagationState | None
             ) -> tuple[torch.Tensor, PropagationState]:
        """One frame: key frame (full or fast track + slow track) or propagation (§3)."""
        size = frame.shape[-2:]
        low = self.low_features(frame)
        if state is None:  # the first frame goes through the whole network (§3.1)
            high = self.high_features(low)
            return self.segment(high, size), PropagationState(
                frame=1, key_frame=0, key_low=low.detach(), key_high=high.detach())
        if state.key_low.shape != low.shape:
            raise ValueError(f"adaptive propagation state holds features of shape "
                             f"{tuple(state.key_low.shape)} but the frame of shape "
                             f"{tuple(frame.shape)} gives {tuple(low.shape)}; start a new "
                             "stream with initial_state()")
        t = state.frame
        deviation = self.selector(state.key_low, low)
        key = self._is_key(state, deviation)
        dev = float(deviation.detach().max())
        if key and not self.low_latency:
            high = self.high_features(low)
            nxt = replace(state, frame=t + 1, key_frame=t, key_low=low.detach(),
                          key_high=high.detach(), last_kind="full", last_deviation=dev)
            return self.segment(high, size), nxt
        propagated, fused = self.propagate(state.key_low, state.key_high, low)
        logits = self.segment(fused, size)
        if key:  # fast track now; its features stand in for the key frame's until Sh is done
            nxt = replace(state, key_frame=t, key_low=low.detach(), key_high=propagated.detach(),
                          slow=SlowTrack(frame=t, features=low.detach(), chunks=self.slow_chunks),
                          last_kind="fast-key")
        else:
            nxt = replace(state, last_kind="propagated")
        nxt = self._advance_slow_track(replace(nxt, frame=t + 1, last_deviation=dev))
        return logits, nxt

    def _advance_slow_track(self, state: PropagationState) -> PropagationState:
        """Run one chunk of the background Sh; adopt its result into the cache when done."""
        if state.slow is None:
            return state
        (start, stop), rest = state.slow.chunks[0], state.slow.chunks[1:]
        with torch.no_grad():
            features = self.high_features(state.slow.features, start, stop)
        if rest:
            return replace(state, slow=replace(state.slow, features=features, chunks=rest))
        if state.key_frame != state.slow.frame:  # cannot happen: no new key while in flight
            raise RuntimeError("slow track finished for a key frame that is no longer cached")
        return replace(state, key_high=features, slow=None)

    def cost(self, height: int, width: int) -> ModelCost:
        """Cost of a steady-state non-key (propagated) frame; see `cost_breakdown`."""
        return self.cost_breakdown(height, width)["propagated"]

    def cost_breakdown(self, height: int, width: int) -> dict[str, ModelCost]:
        """Multiply-adds of each kind of step: "full" (basic network), "key" (selector + Sh on
        the critical path), "propagated", and "fast-key" (the worst low-latency step:
        propagation plus the largest slow-track chunk)."""
        frame = torch.zeros(1, 3, height, width, device=next(self.parameters()).device)
        params = sum(p.numel() for p in self.parameters())
        was = (self.training, self.threshold, self.key_interval, self.low_latency)
        self.eval()
        out: dict[str, int] = {}
        with torch.no_grad():
            _, state = self.step(frame, None)
            out["full"], _ = count(lambda: self.full(frame))
            self.low_latency, self.key_interval = False, 1
            out["key"], _ = count(lambda: self.step(frame, state))
            self.key_interval = 10**9
            out["propagated"], _ = count(lambda: self.step(frame, state))
            self.low_latency, self.key_interval = True, 1
            macs, (_, slow) = count(lambda: self.step(frame, state))
            worst = macs
            self.key_interval = 10**9
            while slow.slow is not None:
                macs, (_, slow) = count(lambda s=slow: self.step(frame, s))
                worst = max(worst, macs)
            out["fast-key"] = worst
        self.training, self.threshold, self.key_interval, self.low_latency = was
        self.train(was[0])
        return {kind: ModelCost(params=params, macs=macs, height=height, width=width)
                for kind, macs in out.items()}


def count(run):
    """(multiply-adds, result) of calling `run()`."""
    counter = FlopCounterMode(display=False)
    with counter:
        result = run()
    return counter.get_total_flops() // 2, result


def adaptive_propagation(low_channels: int = 64, high_channels: int = 96,
                         feature_channels: int = 64, high_blocks: int = 6, side_width: int = 32,
                         kernel: int = 9, num_classes: int = NUM_CLASSES, threshold: float = 0.2,
                         key_interval: int | None = None, low_latency: bool = True,
                         slow_track_frames: int = 6, stage: str = "basic"
                         ) -> AdaptivePropagation:
    """Adaptive propagation network (AFP + AKS + LLS by default; Table 1's variants via
    `key_interval` and `low_latency`; `stage` picks what trains, see `STAGES`)."""
    return AdaptivePropagation(low_channels=low_channels, high_channels=high_channels,
                               feature_channels=feature_channels, high_blocks=high_blocks,
                               side_width=side_width, kernel=kernel, num_classes=num_classes,
                               threshold=threshold, key_interval=key_interval,
                               low_latency=low_latency, slow_track_frames=slow_track_frames,
                               stage=stage)
