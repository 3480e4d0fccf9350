"""StreamFormer: a ViT with causal temporal attention for streaming segmentation (Yan et al.).

Frames become patch tokens with spatial and temporal position embeddings added separately
(§3.2). Each block applies divided space-time attention, z^{l+1} = FFN(space(time(z^l)))
(Eq. 3): the temporal attention of a token attends causally to the same spatial position in
past frames (Eq. 4), through a zero-initialised tanh gate (§4.2); the spatial attention
carries LoRA on its query/key/value projections (Eq. 5), whose base weights come from an
image-only stage trained first. A KV cache holds each layer's temporal keys and values for
the last `window - 1` frames, so a streamed frame costs the same however long the stream.
Per-patch logits are scaled cosine similarities between patch embeddings and class
embeddings (§3.4, spatial level), upsampled to the frame.

Deviations (no pretrained weights or text encoder can be downloaded here): the spatial
weights come from an image stage trained on CamVid instead of SigLIP, and the class
embeddings are learned parameters instead of SigLIP text embeddings of class prompts.
Temporal attention is bounded to a window of `window` frames and the temporal position
embedding of frame t is that of min(t, max_frames - 1), so the stream stays stationary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edge.models.base import IGNORE_INDEX, NUM_CLASSES, ModelCost, StreamingSegmenter

STAGES = ("image", "video")


class FreezableLinear(nn.Linear):
    """A linear layer whose weights can be frozen by detaching them in the forward pass.

    Freezing this way (instead of `requires_grad`) keeps the optimiser's parameter groups the
    same across training stages, so a run can resume into the next stage.
    """

    frozen: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.frozen:
            return super().forward(x)
        bias = None if self.bias is None else self.bias.detach()
        return F.linear(x, self.weight.detach(), bias)


class LoRALinear(nn.Module):
    """y = W x + B(A x) with a frozen-able base W and a rank-r update, B zero-initialised
    (Hu et al., as in Eq. 5's Q' = W_Q^T x + W_QB^T (W_QA^T x))."""

    def __init__(self, d_in: int, d_out: int, rank: int) -> None:
        super().__init__()
        self.base = FreezableLinear(d_in, d_out)
        self.lora_a = FreezableLinear(d_in, rank, bias=False)
        self.lora_b = FreezableLinear(rank, d_out, bias=False)
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_b(self.lora_a(x))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., L, 3*D) -> three (..., heads, L, D/heads) tensors."""
    *lead, length, d3 = x.shape
    x = x.view(*lead, length, 3, heads, d3 // (3 * heads)).movedim(-4, -2)
    q, k, v = x.unbind(dim=-4)
    return q, k, v


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(..., heads, L, d) -> (..., L, heads*d)."""
    return x.transpose(-3, -2).flatten(-2)


class DividedBlock(nn.Module):
    """One StreamFormer block: gated causal temporal attention, LoRA spatial attention, FFN."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, rank: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_t = nn.LayerNorm(dim)
        self.qkv_t = FreezableLinear(dim, 3 * dim)
        self.proj_t = FreezableLinear(dim, dim)
        self.gate = nn.Parameter(torch.zeros(()))   # tanh gate, zero at initialisation (§4.2)
        self.gate_frozen = False
        self.norm_s = nn.LayerNorm(dim)
        self.qkv_s = LoRALinear(dim, 3 * dim, rank)
        self.proj_s = FreezableLinear(dim, dim)
        self.norm_m = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))

    def spatial(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 5 on (..., P, D) tokens of one frame, then the FFN (Eq. 3)."""
        q, k, v = _heads(self.qkv_s(self.norm_s(x)), self.heads)
        x = x + self.proj_s(_merge(F.scaled_dot_product_attention(q, k, v)))
        return x + self.mlp(self.norm_m(x))

    def temporal_step(self, z: torch.Tensor, past_k: torch.Tensor | None,
                      past_v: torch.Tensor | None, keep: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 4 for the newest frame's tokens z (N, P, D) against cached keys/values
        (N, P, heads, w, d); returns the output and the cache trimmed to `keep` frames."""
        q, k, v = _heads(self.qkv_t(self.norm_t(z))[:, :, None], self.heads)
        if past_k is not None:
            k, v = torch.cat([past_k, k], dim=-2), torch.cat([past_v, v], dim=-2)
        out = _merge(F.scaled_dot_product_attention(q, k, v))[:, :, 0]
        z = z + self.gated(self.proj_t(out))
        return z, k[..., k.shape[-2] - keep:, :], v[..., v.shape[-2] - keep:, :]

    def temporal_clip(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 4 over a whole clip z (N, T, P, D) with the causal window mask (T, T)."""
        zp = z.transpose(1, 2)                                   # (N, P, T, D)
        q, k, v = _heads(self.qkv_t(self.norm_t(zp)), self.heads)
        out = _merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        return z + self.gated(self.proj_t(out).transpose(1, 2))

    def gated(self, x: torch.Tensor) -> torch.Tensor:
        """tanh(gate) * x, the zero-initialised gate on the temporal branch (§4.2)."""
        gate = self.gate.detach() if self.gate_frozen else self.gate
        return torch.tanh(gate) * x


@dataclass(frozen=True)
class KVCache:
    """Streaming state: frames seen so far and, per block, the temporal keys and values of
    the last `window - 1` frames, each (N, P, heads, w, d)."""

    frames: int
    grid: tuple[int, int]
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]


class StreamFormer(StreamingSegmenter):
    """ViT-style streaming segmenter; `window` bounds the causal temporal attention."""

    streaming = True

    def __init__(self, patch: int = 16, dim: int = 128, depth: int = 6, heads: int = 4,
                 mlp_ratio: int = 4, lora_rank: int = 8, window: int = 16,
                 max_frames: int = 16, grid: tuple[int, int] = (23, 30),
                 num_classes: int = NUM_CLASSES, stage: str = "video") -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        if window < 1 or max_frames < 1:
            raise ValueError("window and max_frames must be >= 1")
        self.num_classes = num_classes
        self.patch = patch
        self.window = window
        self.max_frames = max_frames
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.pos_space = nn.Parameter(torch.zeros(1, dim, *grid))
        self.pos_time = nn.Parameter(torch.zeros(max_frames, dim))
        nn.init.trunc_normal_(self.pos_space, std=0.02)
        nn.init.trunc_normal_(self.pos_time, std=0.02)
        self.blocks = nn.ModuleList(DividedBlock(dim, heads, mlp_ratio, lora_rank)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.project = nn.Linear(dim, dim)          # the visual projector phi_visual
        self.class_embed = nn.Parameter(torch.randn(num_classes, dim) * 0.02)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))   # temperature tau
        self.bias = nn.Parameter(torch.zeros(()))                      # bias b
        self.set_stage(stage)

    # --- tokens and head ------------------------------------------------------------------
    def tokens(self, frames: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, 3, H, W) -> patch tokens (B, P, D) with spatial position embeddings, and the
        patch grid; frames are zero-padded (after normalisation) to a multiple of the patch."""
        x = self.normalize(frames)
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % self.patch, 0, -h % self.patch))
        x = self.embed(x)
        grid = (x.shape[-2], x.shape[-1])
        pos = self.pos_space
        if pos.shape[-2:] != grid:
            pos = F.interpolate(pos, size=grid, mode="bicubic", align_corners=False)
        return (x + pos).flatten(2).transpose(1, 2), grid

    def time_embedding(self, t: torch.Tensor | int) -> torch.Tensor:
        """Temporal position embedding of frame index t (clamped to the trained range)."""
        idx = torch.as_tensor(t, device=self.pos_time.device).clamp(max=self.max_frames - 1)
        return self.pos_time[idx]

    def head(self, z: torch.Tensor, grid: tuple[int, int], size: torch.Size) -> torch.Tensor:
        """Per-patch logits tau * cos(F, t_c) + b (class embeddings t_c), upsampled to `size`."""
        feats = F.normalize(self.project(self.norm(z)), dim=-1)
        classes = F.normalize(self.class_embed, dim=-1)
        logits = self.log_scale.exp() * feats @ classes.t() + self.bias      # (B, P, C)
        logits = logits.transpose(1, 2).reshape(z.shape[0], -1, *grid)
        padded = (grid[0] * self.patch, grid[1] * self.patch)
        logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
        return logits[..., :size[0], :size[1]]

    # --- streaming with the KV cache ------------------------------------------------------
    def step(self, frame: torch.Tensor, state: KVCache | None
             ) -> tuple[torch.Tensor, KVCache]:
        """One frame: temporal attention over the cached last `window - 1` frames (Eq. 3-4)."""
        z, grid = self.tokens(frame)
        t = 0 if state is None else state.frames
        if state is not None and (state.grid != grid or state.keys[0].shape[0] != z.shape[0]):
            raise ValueError(f"StreamFormer cache for a {state.grid} patch grid and batch "
                             f"{state.keys[0].shape[0]} does not fit a frame of shape "
                             f"{tuple(frame.shape)}; start a new stream with initial_state()")
        z = z + self.time_embedding(t)
        keep = self.window - 1
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            past_k = None if state is None else state.keys[i]
            past_v = None if state is None else state.values[i]
            z, k, v = block.temporal_step(z, past_k, past_v, keep)
            keys.append(k.detach())
            values.append(v.detach())
            z = block.spatial(z)
        logits = self.head(z, grid, frame.shape[-2:])
        return logits, KVCache(frames=t + 1, grid=grid, keys=tuple(keys), values=tuple(values))

    # --- whole clips (training, and recomputation without a cache) ------------------------
    def causal_mask(self, frames: int, device: torch.device | None = None) -> torch.Tensor:
        """M of Eq. 4 as a boolean "may attend" mask: j <= i and i - j < window."""
        i = torch.arange(frames, device=device)
        gap = i[:, None] - i[None, :]
        return (gap >= 0) & (gap < self.window)

    def forward_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """Logits (N, T, C, H, W) of every frame of a clip (N, T, 3, H, W), all frames at
        once with the causal mask; frame t's logits equal the t-th streamed step's."""
        n, t = clip.shape[:2]
        z, grid = self.tokens(clip.flatten(0, 1))
        z = z.view(n, t, *z.shape[1:]) + self.time_embedding(
            torch.arange(t, device=clip.device))[None, :, None]
        mask = self.causal_mask(t, clip.device)
        for block in self.blocks:
            z = block.spatial(block.temporal_clip(z, mask))
        logits = self.head(z.flatten(0, 1), grid, clip.shape[-2:])
        return logits.view(n, t, *logits.shape[1:])

    # --- training stages ------------------------------------------------------------------
    def set_stage(self, stage: str) -> None:
        """Which weights train (§3.2, §4.2): "image" freezes the temporal attention, its gate
        and LoRA (the image-only stage, trained first on stills); "video" freezes the spatial
        attention's base weights so that only LoRA adapts them."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.stage = stage
        image = stage == "image"
        for block in self.blocks:
            block.qkv_t.frozen = block.proj_t.frozen = block.gate_frozen = image
            block.qkv_s.lora_a.frozen = block.qkv_s.lora_b.frozen = image
            block.qkv_s.base.frozen = block.proj_s.frozen = not image

    def clip_loss(self, frames: torch.Tensor, labels: torch.Tensor,
                  weight: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy over the labelled frames of a clip (N, T, 3, H, W), all frames in one
        causal pass (the trainer's clip hook; §3.4's spatial-level objective)."""
        logits = self.forward_clip(frames).flatten(0, 1)
        return F.cross_entropy(logits, labels.flatten(0, 1), weight=weight,
                               ignore_index=IGNORE_INDEX)

    def cost(self, height: int, width: int) -> ModelCost:
        """Parameters and multiply-adds of a step with a full window of cached frames."""
        frame = torch.zeros(1, 3, height, width, device=self.pos_time.device)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            state = None
            for _ in range(self.window):
                _, state = self.step(frame, state)
            counter = FlopCounterMode(display=False)
            with counter:
                self.step(frame, state)
        self.train(was_training)
        return ModelCost(params=sum(p.numel() for p in self.parameters()),
                         macs=counter.get_total_flops() // 2, height=height, width=width)


def streamformer(patch: int = 16, dim: int = 128, depth: int = 6, heads: int = 4,
                 mlp_ratio: int = 4, lora_rank: int = 8, window: int = 16, max_frames: int = 16,
                 grid: tuple[int, int] = (23, 30), num_classes: int = NUM_CLASSES,
                 stage: str = "video") -> StreamFormer:
    """StreamFormer; the default spatial grid (23 x 30) is 360x480 in 16-pixel patches;
    `stage` picks the trained weights ("image" first, then "video")."""
    return StreamFormer(patch=patch, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio,
                        lora_rank=lora_rank, window=window, max_frames=max_frames,
                        grid=tuple(grid), num_classes=num_classes, stage=stage)
