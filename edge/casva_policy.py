"""CASVA's learned configuration policy (Zhang et al., INFOCOM 2022; STAC §VIII-A): an
actor-critic MLP trained with PPO in the table-replay environment (`edge.casva_env`), and
the edge tuner that runs it once per segment (`--tuner casva-rl:POLICY.pt`).

State (`edge.casva_env.observe`): the last WINDOW bandwidth samples the tuner was given
(the estimator's values, never future bandwidth unless the estimator is the oracle), the
previous decision, the last segment's size and estimated delay (its bits plus the queue
estimated from past sizes and samples, over the last sample), a content indicator from
the encoding itself (the segment's size over the mean size of its grid cell in the
tables) and CASVA's pre-encoding indicator (the size of the second's first frame encoded
by the device at a fixed reference configuration, over its mean in the training tables;
policies saved before it read the state without this last column). Action: one index
into each of the resolution, fps and QP lists (three categorical heads). At run time the
policy acts greedily.
"""

from __future__ import annotations

import csv
import json
import math
import pickle
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge.casva_env import (
    REF_KBPS,
    STATE_DIM,
    STATE_DIM_V1,
    WINDOW,
    CasvaEnv,
    SecondTrace,
    Tables,
    load_families,
    observe,
    split_traces,
)
from edge.tuner import Tuner, changed
from stac.protocol import Config, Content

HIDDEN = 64
HORIZON = 40  # segments per training episode


class ActorCritic(nn.Module):
    """state -> (logits of each knob's list, value): two hidden layers of HIDDEN units. It
    reads the state's first `inputs` columns (STATE_DIM_V1 for policies saved before the
    pre-encoding indicator)."""

    def __init__(self, grid: Sequence[int], hidden: int = HIDDEN,
                 inputs: int = STATE_DIM) -> None:
        super().__init__()
        self.grid = tuple(int(g) for g in grid)
        if inputs not in (STATE_DIM, STATE_DIM_V1):
            raise ValueError(f"a CASVA policy reads {STATE_DIM_V1} or {STATE_DIM} inputs, "
                             f"got {inputs}")
        self.inputs = inputs
        self.body = nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(),
                                  nn.Linear(hidden, hidden), nn.Tanh())
        self.pi = nn.Linear(hidden, sum(self.grid))
        self.v = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = self.body(x[..., :self.inputs])
        return list(torch.split(self.pi(h), self.grid, dim=-1)), self.v(h).squeeze(-1)


def _log_prob(logits: list[torch.Tensor], actions: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over the heads of log pi(a) and of the entropy."""
    lp, ent = 0.0, 0.0
    for i, lg in enumerate(logits):
        logp = torch.log_softmax(lg, dim=-1)
        lp = lp + logp.gather(-1, actions[:, i:i + 1]).squeeze(-1)
        ent = ent - (logp.exp() * logp).sum(-1)
    return lp, ent


class CasvaPolicy:
    """A trained actor (greedy at run time), its grid, the tables' mean size per grid cell
    (the content reference), the mean reference pre-encoding (`Tables.pre_ref`) and its
    card."""

    def __init__(self, net: ActorCritic, scales: Sequence[float], fps: Sequence[float],
                 qps: Sequence[int], mean_bits: np.ndarray, card: dict,
                 pre_ref: float = 1.0) -> None:
        self.net = net.eval()
        self.scales, self.fps, self.qps = tuple(scales), tuple(fps), tuple(qps)
        self.mean_bits = np.asarray(mean_bits, dtype=np.float64)
        self.card = card
        self.pre_ref = float(pre_ref)

    @property
    def grid(self) -> tuple[int, int, int]:
        return (len(self.scales), len(self.fps), len(self.qps))

    def act(self, state: np.ndarray) -> np.ndarray:
        """Greedy grid indices (n, 3) for states (n, STATE_DIM)."""
        with torch.inference_mode():
            logits, _ = self.net(torch.from_numpy(np.asarray(state, dtype=np.float32)))
        return torch.stack([lg.argmax(-1) for lg in logits], dim=-1).numpy()

    def knobs(self, idx: Sequence[int]) -> dict[str, float]:
        r, f, q = (int(i) for i in idx)
        return {"scale": self.scales[r], "fps": self.fps[f], "qp": float(self.qps[q])}

    def indices(self, config: Config) -> np.ndarray:
        """The grid indices nearest `config` (scale and fps in log space)."""
        return np.array([
            int(np.argmin(np.abs(np.log(self.scales) - math.log(config["scale"])))),
            int(np.argmin(np.abs(np.log(self.fps) - math.log(config.fps)))),
            int(np.argmin(np.abs(np.array(self.qps) - config["qp"])))])

    def save(self, path: str | Path) -> Path:
        """Weights, grid and content reference in `path`; the card as JSON beside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": self.net.state_dict(),
                    "scales": [float(v) for v in self.scales],
                    "fps": [float(v) for v in self.fps], "qps": [int(v) for v in self.qps],
                    "mean_bits": self.mean_bits.tolist(), "pre_ref": self.pre_ref,
                    "card": self.card}, path)
        path.with_suffix(".json").write_text(json.dumps(self.card, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> CasvaPolicy:
        """A policy saved by `save`; ValueError naming the file if it is not one."""
        try:
            blob = torch.load(Path(path), map_location="cpu", weights_only=True)
            grid = (len(blob["scales"]), len(blob["fps"]), len(blob["qps"]))
            net = ActorCritic(grid, inputs=int(blob["state"]["body.0.weight"].shape[1]))
            net.load_state_dict(blob["state"])
        except (OSError, KeyError, RuntimeError, TypeError, ValueError,
                pickle.UnpicklingError) as e:
            raise ValueError(f"{path}: not a CASVA policy ({e})") from None
        return cls(net, blob["scales"], blob["fps"], blob["qps"], np.array(blob["mean_bits"]),
                   blob["card"], float(blob.get("pre_ref", 1.0)))


class CasvaTuner(Tuner):
    """The per-segment (1 s) tuner of scheme `casva`: CASVA's policy on the state it keeps
    from what the edge sees each second (sizes, bandwidth estimates, its own decisions)."""

    name = "casva-rl"

    def __init__(self, policy: CasvaPolicy) -> None:
        self.policy = policy
        self.window: deque[float] = deque(maxlen=WINDOW)
        self.queue_kbit = 0.0  # the uplink queue estimated from sizes and samples

    def state(self, bitrate_kbps: float, bandwidth_kbps: float, config: Config,
              content: Content | None = None) -> np.ndarray:
        """Add the second's sample and return the policy's state; `content` is the device's
        (`c`: kilobits of the second's reference pre-encoding; None: indicator 0)."""
        if not self.window:
            self.window.extend([bandwidth_kbps] * WINDOW)
        self.window.append(bandwidth_kbps)
        prev = self.policy.indices(config)
        bits = max(float(bitrate_kbps), 0.0)
        delay = (self.queue_kbit + bits) / max(bandwidth_kbps, 1e-6)
        self.queue_kbit = max(self.queue_kbit + bits - bandwidth_kbps, 0.0)
        cell = int(np.ravel_multi_index(tuple(prev), self.policy.grid))
        encoded = math.log(max(bits, 1e-3) / self.policy.mean_bits[cell])
        pre = 0.0 if content is None else pre_indicator(content.c, self.policy.pre_ref)
        return observe(np.array([list(self.window)]), prev[None], np.array([delay]),
                       np.array([bits]), np.array([encoded]), self.policy.grid,
                       np.array([pre]))

    def step(self, second: int, bitrate_kbps: float, bandwidth_kbps: float, config: Config,
             content: Content | None) -> Config | None:
        """The policy's (scale, fps, qp) from `second + 1` on; None without an estimate."""
        if not math.isfinite(bandwidth_kbps):
            return None
        idx = self.policy.act(self.state(bitrate_kbps, bandwidth_kbps, config, content))[0]
        new = changed(config, second, self.policy.knobs(idx))
        if new is not None:
            self.queue_kbit = 0.0  # a new configuration discards what is queued (§VII)
        return new


def pre_indicator(kbits: float, pre_ref: float) -> float:
    """CASVA's pre-encoding indicator: log of the reference pre-encoding's kilobits over
    their mean in the training tables (0 for a non-positive or non-finite size)."""
    if not (math.isfinite(kbits) and kbits > 0):
        return 0.0
    return math.log(kbits / pre_ref)


def make_casva_tuner(arg: str) -> CasvaTuner:
    """`casva-rl:POLICY.pt` (the shipped policy when POLICY is empty)."""
    return CasvaTuner(CasvaPolicy.load(arg or SHIPPED))


SHIPPED = Path(__file__).resolve().parent / "checkpoints" / "casva_policy.pt"


# --- training -----------------------------------------------------------------------------


def rollout(env: CasvaEnv, policy: ActorCritic | CasvaPolicy, state: np.ndarray,
            greedy: bool = False, gen: torch.Generator | None = None) -> dict:
    """One episode of every env: states, actions, log-probs, values, rewards and infos."""
    net = policy.net if isinstance(policy, CasvaPolicy) else policy
    S, A, LP, V, R, infos = [], [], [], [], [], []
    for _ in range(env.horizon):
        x = torch.from_numpy(state)
        with torch.no_grad():
            logits, v = net(x)
            if greedy:
                a = torch.stack([lg.argmax(-1) for lg in logits], -1)
            else:
                a = torch.stack([torch.multinomial(torch.softmax(lg, -1), 1, generator=gen)
                                 .squeeze(-1) for lg in logits], -1)
            lp, _ = _log_prob(logits, a)
        nxt, r, info = env.step(a.numpy())
        S.append(x), A.append(a), LP.append(lp), V.append(v)
        R.append(torch.from_numpy(r).float())
        infos.append(info)
        state = nxt
    return {"s": torch.stack(S), "a": torch.stack(A), "lp": torch.stack(LP),
            "v": torch.stack(V), "r": torch.stack(R), "info": infos}


def advantages(r: torch.Tensor, v: torch.Tensor, gamma: float, lam: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over (T, n) rewards and values (the episode ends after T: no bootstrap)."""
    T = r.shape[0]
    adv = torch.zeros_like(r)
    last = torch.zeros_like(r[0])
    for t in reversed(range(T)):
        nv = v[t + 1] if t + 1 < T else torch.zeros_like(v[0])
        delta = r[t] + gamma * nv - v[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv, adv + v


def evaluate(env: CasvaEnv, policy: CasvaPolicy, bandwidth: np.ndarray, video: np.ndarray,
             start: np.ndarray) -> dict:
    """Greedy episodes of `policy` and of every fixed grid cell over the same bandwidth
    windows: mean reward, PA, seconds over the bandwidth and dropped keyframes per episode;
    `best_fixed` is the cell with the highest mean reward in hindsight, per episode, and
    `best_fixed_no_more_over` the one with the highest PA among the cells with no more
    seconds over the bandwidth than the policy in that episode."""
    state = env.reset(bandwidth, video, start)
    out = rollout(env, policy, state, greedy=True)
    def summary(infos, r):
        return {"reward": r.mean(0).numpy(), "pa": np.mean([i["pa"] for i in infos], 0),
                "over_s": np.sum([i["over"] for i in infos], 0),
                "dropped": np.sum([i["dropped"] for i in infos], 0)}
    learned = summary(out["info"], out["r"])
    fixed = []
    for cell in range(int(np.prod(env.grid))):
        env.reset(bandwidth, video, start)
        a = np.tile(np.array(np.unravel_index(cell, env.grid)), (len(bandwidth), 1))
        infos, rs = [], []
        for _ in range(env.horizon):
            _, r, info = env.step(a)
            infos.append(info), rs.append(r)
        fixed.append(summary(infos, torch.from_numpy(np.array(rs))))
    rewards = np.stack([f["reward"] for f in fixed])  # (cells, episodes)
    best = rewards.argmax(0)
    pick = {k: np.array([fixed[c][k][e] for e, c in enumerate(best)]) for k in learned}
    # the most accurate fixed cell with no more seconds over the bandwidth than the policy
    pa = np.stack([f["pa"] for f in fixed])
    over = np.stack([f["over_s"] for f in fixed])
    allowed = np.where(over <= learned["over_s"][None], pa, -np.inf)
    fair = np.where(np.isfinite(allowed.max(0)), allowed.argmax(0), over.argmin(0))
    pick_fair = {k: np.array([fixed[c][k][e] for e, c in enumerate(fair)]) for k in learned}
    return {"learned": learned, "best_fixed": pick, "best_fixed_no_more_over": pick_fair,
            "best_cell": best}


def train(tables: Tables, trace_root: str | Path, updates: int = 300, envs: int = 64,
          seed: int = 0, curve: str | Path | None = None, lr: float = 1e-3,
          gamma: float = 0.9, lam: float = 0.95, clip: float = 0.2, epochs: int = 4,
          traces: Sequence[SecondTrace] | None = None) -> tuple[CasvaPolicy, dict]:
    """PPO on the table-replay environment over the training split of the real traces;
    validation: greedy episodes on the held-out split against the best fixed cell. Writes
    the reward curve (CSV, and PNG beside it) to `curve` when given."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    traces = list(traces) if traces is not None else load_families(trace_root)
    train_tr, val_tr = split_traces(traces)
    env = CasvaEnv(tables, train_tr, envs, HORIZON, rng)
    grid = env.grid
    net = ActorCritic(grid)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    for u in range(updates):
        ent_coef = 0.05 * (1 - u / updates) + 0.002
        batch = rollout(env, net, env.reset(), gen=gen)
        adv, ret = advantages(batch["r"], batch["v"], gamma, lam)
        s, a = batch["s"].flatten(0, 1), batch["a"].flatten(0, 1)
        old, adv, ret = batch["lp"].flatten(), adv.flatten(), ret.flatten()
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        for _ in range(epochs):
            perm = torch.randperm(len(s), generator=gen)
            for mb in perm.split(max(len(s) // 4, 1)):
                logits, v = net(s[mb])
                lp, ent = _log_prob(logits, a[mb])
                ratio = (lp - old[mb]).exp()
                pg = -torch.min(ratio * adv[mb],
                                ratio.clamp(1 - clip, 1 + clip) * adv[mb]).mean()
                loss = pg + 0.5 * ((v - ret[mb]) ** 2).mean() - ent_coef * ent.mean()
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 0.5)
                opt.step()
        info = batch["info"]
        history.append({"update": u + 1, "episodes": (u + 1) * envs,
                        "reward": float(batch["r"].mean()),
                        "pa": float(np.mean([i["pa"] for i in info])),
                        "over_s": float(np.mean(np.sum([i["over"] for i in info], 0)))})
    policy = CasvaPolicy(net, tables.scales, tables.fps, tables.qps, env.mean_bits, {},
                         env.pre_ref)
    val = validation(tables, val_tr, policy, seed)
    result = {
        "algorithm": "PPO", "updates": updates, "episodes": updates * envs,
        "horizon_s": HORIZON, "seed": seed, "videos": list(tables.videos),
        "grid": {"scale": list(tables.scales), "fps": list(tables.fps),
                 "qp": list(tables.qps)},
        "traces_train": [f"{t.family}/{t.name}" for t in train_tr],
        "traces_val": [f"{t.family}/{t.name}" for t in val_tr],
        "final_train_reward": float(np.mean([h["reward"] for h in history[-10:]])),
        "validation": val, "wall_s": round(time.perf_counter() - t0, 1),
        "torch": str(torch.__version__),
    }
    policy.card = dict(result)
    if curve is not None:
        write_curve(history, curve)
        policy.card["curve"] = Path(curve).name
    return policy, result


VAL_EPISODES_PER_TRACE = 4


def validation(tables: Tables, val_traces: Sequence[SecondTrace], policy: CasvaPolicy,
               seed: int) -> dict:
    """Greedy validation on the held-out traces (windows from fixed, seeded starts, each
    clip): per family, mean reward, PA, seconds over bandwidth per 40 s episode and dropped
    keyframes, for the policy and the best fixed cell in hindsight per episode."""
    rng = np.random.default_rng(seed + 1)
    env = CasvaEnv(tables, val_traces, 1, HORIZON, rng)
    rows, fams, videos = [], [], []
    for t in val_traces:
        if len(t.kbps) < HORIZON + WINDOW:
            continue
        for _ in range(VAL_EPISODES_PER_TRACE):
            s = int(rng.integers(len(t.kbps) - HORIZON - WINDOW + 1))
            for v in range(len(tables.videos)):
                rows.append(t.kbps[s:s + HORIZON + WINDOW])
                fams.append(t.family)
                videos.append(v)
    env.n = len(rows)
    res = evaluate(env, policy, np.array(rows), np.array(videos), np.ones(len(rows), int))
    fams_a = np.array(fams)
    out = {}
    for fam in [*dict.fromkeys(fams), "all"]:
        m = np.ones(len(fams), bool) if fam == "all" else fams_a == fam
        out[fam] = {who: {k: round(float(res[who][k][m].mean()), 4) for k in res[who]}
                    for who in ("learned", "best_fixed", "best_fixed_no_more_over")}
        out[fam]["episodes"] = int(m.sum())
    return out


def write_curve(history: Sequence[dict], path: str | Path) -> None:
    """The reward curve as CSV and PNG (same stem)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    fig, ax = plt.subplots(figsize=(5, 3))
    ep = [h["episodes"] for h in history]
    ax.plot(ep, [h["reward"] for h in history], label="reward / segment")
    ax.plot(ep, [h["pa"] for h in history], label="PA", alpha=0.7)
    ax.set_xlabel("training episodes (40 s each)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=100)
    plt.close(fig)


__all__ = ["REF_KBPS", "ActorCritic", "CasvaPolicy", "CasvaTuner", "make_casva_tuner",
           "train"]
