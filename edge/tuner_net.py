"""The tuner network of STAC §VI (Fig. 10): a small MLP that scales B and fps each second.

f(<Bit_{t-1}, Bit^_t, B_{t-1}, fps_{t-1}, c_{t-1}, d_{t-1}>) -> <alpha_t, beta_t>, with
alpha_t = B_t / B_{t-1}, beta_t = fps_t / fps_{t-1}. Inputs are normalised: bitrates, B,
fps, c and d as logs (they span decades; a log keeps the MLP from extrapolating linearly far
outside the profiled content), then every input standardised with the training set's mean
and std; the outputs are log alpha and log beta (MSE on them). Two hidden layers of 96
units: about 20 KFLOPs per call (Table II). Output back to the grid: B_t = B_{t-1} * alpha
rounded, in log space, to the nearest profiled B; fps_t likewise to the nearest profiled
fps (so only configurations that were profiled are ever chosen). `nn-no-c` / `nn-no-d` are
the same network trained without that input (the ablation of Fig. 16).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge.profiles import Example, ProfileRow, make_labels, pooled
from edge.tuner import Tuner, changed
from stac.protocol import Config, Content

INPUTS = ("bitrate_prev", "bandwidth", "B_prev", "fps_prev", "c_prev", "d_prev")
LOG_INPUTS = ("bitrate_prev", "bandwidth", "B_prev", "fps_prev", "c_prev", "d_prev")
#: the inputs taken as logs by weights saved before c and d were (tests/data/tuner_tiny)
OLD_LOG_INPUTS = ("bitrate_prev", "bandwidth", "B_prev", "fps_prev")
HIDDEN = 96
VARIANTS = {"nn": INPUTS, "nn-no-c": tuple(i for i in INPUTS if i != "c_prev"),
            "nn-no-d": tuple(i for i in INPUTS if i != "d_prev")}


def mlp(n_inputs: int, hidden: int = HIDDEN) -> nn.Sequential:
    """The tuner MLP: n_inputs -> hidden -> hidden -> (log alpha, log beta)."""
    return nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, 2))


def flops(n_inputs: int, hidden: int = HIDDEN) -> int:
    """Multiply-adds x 2 of one forward pass."""
    return 2 * (n_inputs * hidden + hidden * hidden + hidden * 2)


def raw_features(values: dict[str, float], inputs: Sequence[str],
                 logs: Sequence[str] = LOG_INPUTS) -> np.ndarray:
    """The un-standardised input vector: logs of the inputs in `logs` (log1p for bitrates,
    which may be 0; c and d floored at 1)."""
    out = []
    for name in inputs:
        v = float(values[name])
        if name in ("bitrate_prev", "bandwidth"):
            v = math.log1p(max(v, 0.0))
        elif name in ("c_prev", "d_prev") and name in logs:
            v = math.log(max(v, 1.0))
        elif name in logs:
            v = math.log(v)
        out.append(v)
    return np.array(out, dtype=np.float32)


def _xy(examples: Sequence[Example], inputs: Sequence[str],
        logs: Sequence[str] = LOG_INPUTS) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([raw_features(e.__dict__, inputs, logs) for e in examples])
    y = np.log(np.array([[e.alpha, e.beta] for e in examples], dtype=np.float32))
    return x, y


@dataclass
class TrainResult:
    """What training reports (the weights' card)."""

    variant: str
    videos_train: list[str]
    video_val: str
    examples_train: int
    examples_val: int
    train_loss: float
    val_loss: float
    epochs: int
    seed: int
    wall_s: float
    kflops: float


class NetTuner(Tuner):
    """The §VI network as a tuner: predict scaling factors, round to the profiled grid."""

    def __init__(self, net: nn.Module, variant: str, mean: np.ndarray, std: np.ndarray,
                 grid_B: Sequence[float], grid_fps: Sequence[float],
                 card: dict | None = None, logs: Sequence[str] = LOG_INPUTS,
                 costs: Sequence[Sequence[float]] = ()) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown tuner network {variant!r}; known: {sorted(VARIANTS)}")
        self.name = variant
        self.inputs = VARIANTS[variant]
        self.net = net.eval()
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.grid_B = np.array(sorted(grid_B), np.float64)
        self.grid_fps = np.array(sorted(grid_fps), np.float64)
        self.card = card or {}
        self.logs = tuple(logs)
        #: (B, fps, mean kbps) of every profiled configuration, over the training profiles
        #: (empty in weights saved before they were kept); nn-safe's cost model
        self.costs = [tuple(map(float, c)) for c in costs]

    def predict(self, values: dict[str, float]) -> tuple[float, float]:
        """(alpha, beta) for one input (a mapping with the names of `INPUTS`)."""
        x = (raw_features(values, self.inputs, self.logs) - self.mean) / self.std
        with torch.inference_mode():
            out = self.net(torch.from_numpy(x)[None])[0].numpy()
        return float(math.exp(out[0])), float(math.exp(out[1]))

    @staticmethod
    def _nearest(grid: np.ndarray, value: float) -> float:
        return float(grid[int(np.argmin(np.abs(np.log(grid) - math.log(value))))])

    def step(self, second: int, bitrate_kbps: float, bandwidth_kbps: float, config: Config,
             content: Content | None) -> Config | None:
        """The next (B, fps) on the grid; None without content or an estimate."""
        if "B" not in config.as_dict():
            raise ValueError(f"tuner {self.name!r} scales STAC's B and fps; this scheme's "
                             f"knobs are {sorted(config.as_dict())} (use --tuner offline)")
        if content is None or not math.isfinite(bandwidth_kbps):
            return None
        b, fps = config["B"], config.fps
        alpha, beta = self.predict({"bitrate_prev": bitrate_kbps, "bandwidth": bandwidth_kbps,
                                    "B_prev": b, "fps_prev": fps, "c_prev": content.c,
                                    "d_prev": content.d})
        return changed(config, second, {"B": self._nearest(self.grid_B, b * alpha),
                                        "fps": self._nearest(self.grid_fps, fps * beta)})

    def save(self, path: str | Path) -> Path:
        """Weights (float32 state dict), normalisation and grid in `path`; the card next to
        it as JSON (`path` with suffix .json) and as Markdown (suffix .md)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"variant": self.name, "state": self.net.state_dict(),
                    "mean": self.mean.tolist(), "std": self.std.tolist(),
                    "grid_B": self.grid_B.tolist(), "grid_fps": self.grid_fps.tolist(),
                    "logs": list(self.logs), "costs": [list(c) for c in self.costs],
                    "card": self.card}, path)
        path.with_suffix(".json").write_text(json.dumps(self.card, indent=2) + "\n")
        path.with_suffix(".md").write_text(card_markdown(path.name, self.card))
        return path

    @classmethod
    def load(cls, path: str | Path) -> NetTuner:
        """A tuner saved by `save`; ValueError naming the file if it is not one."""
        try:
            blob = torch.load(Path(path), map_location="cpu", weights_only=True)
            net = mlp(len(VARIANTS[blob["variant"]]))
            net.load_state_dict(blob["state"])
        except (OSError, KeyError, RuntimeError, TypeError) as e:
            raise ValueError(f"{path}: not tuner weights ({e})") from None
        return cls(net, blob["variant"], np.array(blob["mean"]), np.array(blob["std"]),
                   blob["grid_B"], blob["grid_fps"], blob["card"],
                   logs=blob.get("logs", OLD_LOG_INPUTS), costs=blob.get("costs", ()))


def card_markdown(name: str, card: dict) -> str:
    """The weights' card as Markdown: what was profiled, how it was trained, how well it fits
    the held-back video, and how the output maps back to the grid."""
    def get(key: str, default: object = "?") -> object:
        return card.get(key, default)

    val, train_loss = get("val_loss", math.nan), get("train_loss", math.nan)
    return "\n".join([
        f"# Tuner weights `{name}` (STAC §VI, `{get('variant')}`)", "",
        f"- models profiled: {', '.join(get('models', []))}",
        f"- videos: trained on {', '.join(get('videos_train', []))}; validated on the "
        f"held-back {get('video_val')}",
        f"- profiles: `{get('profiles')}`",
        f"- grid: B {get('grid_B')} x fps {get('grid_fps')}",
        f"- examples (labels, §VI): {get('examples_train')} train, {get('examples_val')} "
        "validation",
        f"- loss (MSE of log alpha, log beta): train {train_loss:.4f}, validation "
        f"{val:.4f} (re-checked by tests/test_tuner_shipped.py)",
        f"- {get('epochs')} epochs of full-batch Adam (lr {get('lr')}), seed {get('seed')}, wall "
        f"{get('wall_s', math.nan):.1f} s, {get('kflops')} KFLOPs per call",
        f"- command: `{get('command')}`",
        "- kept with the weights: each profiled configuration's mean bitrate over these "
        "profiles (the cost model of `nn-safe`, edge/tuner_safe.py)", "",
        "Output back to the grid: B_t = B_{t-1} x alpha rounded in log space to the nearest "
        "profiled B; fps_t = fps_{t-1} x beta to the nearest profiled fps.", ""])


def train(rows: Sequence[ProfileRow], val_video: str, variant: str = "nn", seed: int = 0,
          epochs: int = 2000, lr: float = 3e-3, weight_decay: float = 0.0
          ) -> tuple[NetTuner, TrainResult]:
    """Train the §VI network on the labels of every video but `val_video` (full-batch Adam,
    decoupled `weight_decay`, MSE on log alpha / log beta); report the loss on
    `val_video`'s labels."""
    t0 = time.perf_counter()
    rows = [r for r in rows if math.isfinite(r.c) and math.isfinite(r.d)]  # content needed
    videos = sorted({r.video for r in rows})
    if val_video not in videos or len(videos) < 2:
        raise ValueError(f"validation video {val_video!r} must be one of several profiled "
                         f"videos, got {videos}")
    inputs = VARIANTS[variant]
    train_ex = make_labels([r for r in rows if r.video != val_video])
    val_ex = make_labels([r for r in rows if r.video == val_video])
    if not train_ex or not val_ex:
        raise ValueError("each video needs at least two consecutive profiled seconds")
    x, y = _xy(train_ex, inputs)
    xv, yv = _xy(val_ex, inputs)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    torch.manual_seed(seed)
    net = mlp(len(inputs))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    xt, yt = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
    xvt, yvt = torch.from_numpy((xv - mean) / std), torch.from_numpy(yv)
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(xt), yt)
        loss.backward()
        opt.step()
    with torch.no_grad():
        train_loss = float(nn.functional.mse_loss(net(xt), yt))
        val_loss = float(nn.functional.mse_loss(net(xvt), yvt))
    result = TrainResult(variant=variant, videos_train=[v for v in videos if v != val_video],
                         video_val=val_video, examples_train=len(train_ex),
                         examples_val=len(val_ex), train_loss=train_loss, val_loss=val_loss,
                         epochs=epochs, seed=seed, wall_s=time.perf_counter() - t0,
                         kflops=flops(len(inputs)) / 1000)
    card = {**result.__dict__, "lr": lr, "weight_decay": weight_decay,
            "grid_B": sorted({r.B for r in rows}),
            "grid_fps": sorted({r.fps for r in rows}), "models": sorted({r.model for r in rows})}
    costs = [(r.B, r.fps, r.bitrate_kbps) for r in pooled(rows)]
    tuner = NetTuner(net, variant, mean, std, card["grid_B"], card["grid_fps"], card,
                     costs=costs)
    return tuner, result


def validation_loss(tuner: NetTuner, rows: Sequence[ProfileRow]) -> float:
    """MSE of `tuner`'s network on the labels of `rows` (re-checks a card's figure)."""
    xv, yv = _xy(make_labels(rows), tuner.inputs, tuner.logs)
    x = torch.from_numpy((xv - tuner.mean) / tuner.std)
    with torch.no_grad():
        return float(nn.functional.mse_loss(tuner.net(x), torch.from_numpy(yv)))
