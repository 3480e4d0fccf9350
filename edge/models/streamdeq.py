"""StreamDEQ: a multiscale deep equilibrium segmenter run in streaming mode (Ertenli et al.).

The representation z* of a frame x is the fixed point of one shallow weight-tied block,
z* = f(z*; x) (Eq. 1). f is MDEQ-style (Bai et al. 2020): parallel branches at 1/4, 1/8 and
1/16 resolution, each a residual block with group norm whose second convolution receives the
input injection (on the highest-resolution branch, as in MDEQ), followed by a multiscale
fusion. The fixed point is found by unrolling (UR, fixed-point iteration) or by Anderson
acceleration (IL, a quasi-Newton root finder of g = f(z) - z, Eq. 2, trained with the
implicit gradient of Eq. 3). SUR trains with a random number of unrollings per batch
(§III-C). Streaming inference runs M iterations per frame starting from the previous
frame's representation, zeros on the first frame (Eq. 6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edge.models.base import NUM_CLASSES, StreamingSegmenter

SOLVERS = ("unroll", "anderson")


def _gn(channels: int, groups: int, affine: bool = True) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels, affine=affine)


class ResidualBranch(nn.Module):
    """MDEQ's branch block: conv-GN-ReLU, conv (+ injection)-GN, + residual, GN-ReLU."""

    def __init__(self, channels: int, expansion: int, groups: int) -> None:
        super().__init__()
        inner = channels * expansion
        self.conv1 = nn.Conv2d(channels, inner, 3, padding=1, bias=False)
        self.gn1 = _gn(inner, groups)
        self.conv2 = nn.Conv2d(inner, channels, 3, padding=1, bias=False)
        self.gn2 = _gn(channels, groups)
        self.gn3 = _gn(channels, groups)

    def forward(self, z: torch.Tensor, injection: torch.Tensor | None) -> torch.Tensor:
        out = F.relu(self.gn1(self.conv1(z)))
        out = self.conv2(out)
        if injection is not None:
            out = out + injection
        out = self.gn2(out) + z
        return F.relu(self.gn3(out))


class Resample(nn.Module):
    """Brings branch j to the resolution of branch i (MDEQ fusion): strided 3x3 convs down,
    1x1 conv + nearest upsampling up."""

    def __init__(self, c_in: int, c_out: int, steps: int, groups: int) -> None:
        super().__init__()
        self.up = steps < 0
        if self.up:
            self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), _gn(c_out, groups))
        else:
            layers: list[nn.Module] = []
            for k in range(steps):
                last = k == steps - 1
                out = c_out if last else c_in
                layers += [nn.Conv2d(c_in, out, 3, stride=2, padding=1, bias=False),
                           _gn(out, groups)]
                if not last:
                    layers.append(nn.ReLU())
            self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, size: torch.Size) -> torch.Tensor:
        out = self.body(z)
        if self.up:
            out = F.interpolate(out, size=size, mode="nearest")
        return out


class MultiscaleBlock(nn.Module):
    """The weight-tied block f(z; x) of MDEQ: per-branch residual blocks, then fusion."""

    def __init__(self, channels: tuple[int, ...], expansion: int, groups: int) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(ResidualBranch(c, expansion, groups) for c in channels)
        self.fuse = nn.ModuleList(
            nn.ModuleList(Resample(channels[j], channels[i], i - j, groups) if j != i
                          else nn.Identity() for j in range(n))
            for i in range(n))
        self.post = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 1, bias=False),
                          _gn(c, max(1, groups // 2), affine=False))  # MDEQ: half the groups
            for c in channels)

    def forward(self, z: list[torch.Tensor], injection: torch.Tensor) -> list[torch.Tensor]:
        b = [blk(zi, injection if i == 0 else None)
             for i, (blk, zi) in enumerate(zip(self.branches, z, strict=True))]
        out = []
        for i, row in enumerate(self.fuse):
            y = b[i]
            for j, layer in enumerate(row):
                if j != i:
                    y = y + layer(b[j], b[i].shape[-2:])
            out.append(self.post[i](y))
        return out


@dataclass(frozen=True)
class SolverStats:
    """What a fixed-point solve did: function evaluations and final relative residual."""

    iterations: int
    residual: float


def anderson(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, max_iter: int,
             tol: float = 1e-4, memory: int = 5, lam: float = 1e-4,
             beta: float = 1.0) -> tuple[torch.Tensor, SolverStats]:
    """Anderson acceleration for z = f(z) on flat (N, D) iterates (the IL solver).

    Returns f at the last iterate (one more application than the last mixed point) after
    `max_iter` evaluations of f, or earlier once the relative residual falls below `tol`.
    """
    n, d = z0.shape
    if max_iter < 1:
        return z0, SolverStats(0, float("nan"))
    xs = z0.new_zeros(n, memory, d)
    fs = z0.new_zeros(n, memory, d)
    xs[:, 0], fs[:, 0] = z0, f(z0)
    last = fs[:, 0]
    res = _residual(last, z0)
    if max_iter == 1 or res < tol:
        return last, SolverStats(1, res)
    xs[:, 1], fs[:, 1] = fs[:, 0], f(fs[:, 0])
    last = fs[:, 1]
    res = _residual(last, xs[:, 1])
    h = z0.new_zeros(n, memory + 1, memory + 1)
    h[:, 0, 1:] = h[:, 1:, 0] = 1
    y = z0.new_zeros(n, memory + 1, 1)
    y[:, 0] = 1
    k = 2
    while k < max_iter and res >= tol:
        m = min(k, memory)
        g = fs[:, :m] - xs[:, :m]
        h[:, 1:m + 1, 1:m + 1] = (torch.bmm(g, g.transpose(1, 2))
                                  + lam * torch.eye(m, dtype=z0.dtype, device=z0.device)[None])
        alpha = torch.linalg.solve(h[:, :m + 1, :m + 1], y[:, :m + 1])[:, 1:m + 1, 0]
        x_new = (beta * (alpha[:, None] @ fs[:, :m])[:, 0]
                 + (1 - beta) * (alpha[:, None] @ xs[:, :m])[:, 0])
        xs[:, k % memory] = x_new
        fs[:, k % memory] = last = f(x_new)
        res = _residual(last, x_new)
        k += 1
    return last, SolverStats(k, res)


def _residual(fz: torch.Tensor, z: torch.Tensor) -> float:
    """Relative residual |f(z) - z| / |f(z)| (MDEQ's convergence measure)."""
    return float((fz - z).norm() / (fz.norm() + 1e-8))


class StreamDEQ(StreamingSegmenter):
    """MDEQ-style segmenter whose fixed point is tracked across frames (Eq. 6).

    `solver` picks UR/SUR ("unroll") or IL ("anderson"); `iterations` is M, the solver
    iterations per streamed frame; `frame_iterations` the single-frame (baseline) budget
    used by `forward`; `train_iterations` the unrollings during training, drawn uniformly
    from 1..train_iterations per batch when `stochastic` (SUR), fixed otherwise (UR).
    """

    streaming = True

    def __init__(self, channels: tuple[int, ...] = (24, 48, 96), expansion: int = 2,
                 groups: int = 4, num_classes: int = NUM_CLASSES, solver: str = "unroll",
                 iterations: int = 2, frame_iterations: int = 12, train_iterations: int = 8,
                 stochastic: bool = True, tol: float = 1e-4) -> None:
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if min(iterations, frame_iterations, train_iterations) < 1:
            raise ValueError("iterations, frame_iterations and train_iterations must be >= 1")
        self.num_classes = num_classes
        self.channels = tuple(channels)
        self.solver = solver
        self.iterations = iterations
        self.frame_iterations = frame_iterations
        self.train_iterations = train_iterations
        self.stochastic = stochastic
        self.tol = tol
        c0 = channels[0]
        # Input injection: two stride-2 convolutions to 1/4 resolution (MDEQ's stem).
        self.inject = nn.Sequential(
            nn.Conv2d(3, c0, 3, stride=2, padding=1, bias=False), _gn(c0, groups), nn.ReLU(),
            nn.Conv2d(c0, c0, 3, stride=2, padding=1, bias=False), _gn(c0, groups), nn.ReLU())
        self.block = MultiscaleBlock(self.channels, expansion, groups)
        for m in self.block.modules():  # MDEQ/HRNet initialisation: small weights in f
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
        total = sum(channels)
        # MDEQ segmentation head: all branches upsampled to 1/4, concatenated, 1x1 convs.
        self.head = nn.Sequential(nn.Conv2d(total, total, 1, bias=False), _gn(total, groups),
                                  nn.ReLU(), nn.Conv2d(total, num_classes, 1))
        self.last_stats: SolverStats | None = None

    # --- shapes ---------------------------------------------------------------------------
    def _shapes(self, injection: torch.Tensor) -> list[tuple[int, int, int]]:
        h, w = injection.shape[-2:]
        shapes = []
        for c in self.channels:
            shapes.append((c, h, w))
            h, w = (h + 1) // 2, (w + 1) // 2
        return shapes

    def zeros(self, injection: torch.Tensor) -> list[torch.Tensor]:
        """z^[0] = 0 at every branch (Eq. 6, first frame)."""
        n = injection.shape[0]
        return [injection.new_zeros(n, *s) for s in self._shapes(injection)]

    @staticmethod
    def pack(z: list[torch.Tensor]) -> torch.Tensor:
        """Branch tensors -> one flat (N, D) vector (the solvers' and the distances' space)."""
        return torch.cat([zi.flatten(1) for zi in z], dim=1)

    def unpack(self, flat: torch.Tensor, injection: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for c, h, w in self._shapes(injection):
            size = c * h * w
            out.append(flat[:, start:start + size].view(-1, c, h, w))
            start += size
        return out

    # --- solving --------------------------------------------------------------------------
    def injection(self, frame: torch.Tensor) -> torch.Tensor:
        """x at 1/4 resolution, computed once per frame and injected at every iteration."""
        return self.inject(self.normalize(frame))

    def f(self, z: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        """One application of the weight-tied block, z -> f(z; x) (Eq. 1)."""
        return self.block(z, x)

    def unroll(self, z: list[torch.Tensor], x: torch.Tensor, n: int) -> list[torch.Tensor]:
        """n fixed-point iterations z^[i+1] = f(z^[i]; x) (UR/SUR)."""
        for _ in range(n):
            z = self.f(z, x)
        return z

    def solve(self, x: torch.Tensor, z0: list[torch.Tensor], n: int) -> list[torch.Tensor]:
        """n evaluations of f from z0 with the configured solver; differentiable w.r.t. x.

        Unrolling back-propagates through every iteration. Anderson runs n-1 evaluations
        without a graph and the last one with it; in training the gradient through that last
        evaluation is corrected by the implicit-function theorem (Eq. 3).
        """
        if self.solver == "unroll":
            return self.unroll(z0, x, n)
        flat0 = self.pack(z0).detach()
        with torch.no_grad():
            flat, self.last_stats = anderson(lambda v: self.pack(self.f(self.unpack(v, x), x)),
                                             flat0, max_iter=n - 1, tol=self.tol)
        z_star = self.unpack(flat, x)
        if not (self.training and torch.is_grad_enabled()):
            return self.f(z_star, x)
        return self._implicit(z_star, x)

    def _implicit(self, z_star: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        """f(z*; x) whose backward solves g = J_f(z*)^T g + dl/dz (Eq. 3) by Anderson."""
        z0 = [zi.detach().requires_grad_() for zi in z_star]
        f0 = self.pack(self.f(z0, x))
        out = self.pack(self.f(z_star, x))

        def backward_hook(grad: torch.Tensor) -> torch.Tensor:
            def vjp(g: torch.Tensor) -> torch.Tensor:
                jt = torch.autograd.grad(f0, z0, g, retain_graph=True)
                return self.pack(list(jt)) + grad
            with torch.enable_grad():
                g, _ = anderson(vjp, torch.zeros_like(grad), max_iter=self.train_iterations,
                                tol=self.tol)
            return g

        if out.requires_grad:
            out.register_hook(backward_hook)
        return self.unpack(out, x)

    def converged(self, frame: torch.Tensor, max_iter: int = 60,
                  tol: float = 1e-5) -> list[torch.Tensor]:
        """The reference representation z*_t (§III-B): the configured solver run from zeros
        until the relative residual is below `tol` or `max_iter` evaluations (no graph)."""
        with torch.no_grad():
            x = self.injection(frame)
            if self.solver == "anderson":
                flat, self.last_stats = anderson(
                    lambda v: self.pack(self.f(self.unpack(v, x), x)),
                    self.pack(self.zeros(x)), max_iter=max_iter, tol=tol)
                return self.unpack(flat, x)
            z, res, k = self.zeros(x), float("inf"), 0
            while k < max_iter and res >= tol:
                nxt = self.f(z, x)
                res, z, k = _residual(self.pack(nxt), self.pack(z)), nxt, k + 1
            self.last_stats = SolverStats(k, res)
            return z

    def logits(self, z: list[torch.Tensor], size: torch.Size) -> torch.Tensor:
        """MDEQ head: branches upsampled to 1/4, concatenated, classified, then to `size`."""
        top = z[0].shape[-2:]
        feats = [z[0]] + [F.interpolate(zi, size=top, mode="bilinear", align_corners=False)
                          for zi in z[1:]]
        out = self.head(torch.cat(feats, dim=1))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    # --- the streaming interface ----------------------------------------------------------
    def step(self, frame: torch.Tensor, state: list[torch.Tensor] | None
             ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """StreamDEQ (Eq. 6): M solver iterations from the previous frame's z (zeros at t=0)."""
        x = self.injection(frame)
        z0 = self.zeros(x) if state is None else list(state)
        if state is not None:
            expected = self._shapes(x)
            got = [tuple(zi.shape[1:]) for zi in z0]
            if got != expected or z0[0].shape[0] != x.shape[0]:
                raise ValueError(f"StreamDEQ state of shape {got} does not fit a frame of "
                                 f"shape {tuple(frame.shape)} (expects {expected}); "
                                 "start a new stream with initial_state()")
        z = self.solve(x, z0, self.iterations)
        return self.logits(z, frame.shape[-2:]), [zi.detach() for zi in z]

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """Single-frame use: in training, SUR/UR unrollings from zeros (a random count per
        batch when `stochastic`, §III-C); in eval, the `frame_iterations` baseline solve."""
        x = self.injection(frame)
        if self.training:
            n = (int(torch.randint(1, self.train_iterations + 1, ())) if self.stochastic
                 else self.train_iterations)
        else:
            n = self.frame_iterations
        z = self.solve(x, self.zeros(x), n)
        return self.logits(z, frame.shape[-2:])


def streamdeq(channels: tuple[int, ...] = (24, 48, 96), expansion: int = 2, groups: int = 4,
              num_classes: int = NUM_CLASSES, solver: str = "unroll", iterations: int = 2,
              frame_iterations: int = 12, train_iterations: int = 8, stochastic: bool = True,
              tol: float = 1e-4) -> StreamDEQ:
    """StreamDEQ; defaults are SUR-StreamDEQ with M=2 (the paper's IL variant: solver=
    "anderson", stochastic=False)."""
    return StreamDEQ(channels=tuple(channels), expansion=expansion, groups=groups,
                     num_classes=num_classes, solver=solver, iterations=iterations,
                     frame_iterations=frame_iterations, train_iterations=train_iterations,
                     stochastic=stochastic, tol=tol)
