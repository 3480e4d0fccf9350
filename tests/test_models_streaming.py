"""The three streaming backbones: state, gradients, solvers, KV cache, scheduling, costs.

Mechanics only (untrained weights, tiny inputs cut from the real dash-cam clip): what must
hold for any weights. Trained checkpoints are checked against their cards elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.models.adaptive_propagation import (
    AdaptivePropagation,
    PropagationState,
    spatially_variant_conv,
)
from edge.models.registry import build_model, list_models, load_model, save_checkpoint
from edge.models.streamdeq import StreamDEQ, anderson
from edge.models.streamformer import KVCache, StreamFormer
from edge.training.data import to_tensor
from stac.frames import open_video

H, W = 48, 64
TINY = {
    "streamdeq": {"iterations": 2, "frame_iterations": 6, "train_iterations": 4},
    "adaptive_propagation": {"low_channels": 16, "high_channels": 24, "feature_channels": 16,
                             "high_blocks": 3, "side_width": 8, "kernel": 5,
                             "slow_track_frames": 3},
    "streamformer": {"patch": 8, "dim": 32, "depth": 2, "heads": 2, "window": 3,
                     "max_frames": 4, "grid": (6, 8)},
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip(dataset) -> torch.Tensor:
    """Eight consecutive real frames (8, 3, 48, 64) of solidWhiteRight.mp4 in [0, 1]."""
    source = open_video(dataset("videos") / "solidWhiteRight.mp4", size=(W, H),
                        max_frames=8)
    return to_tensor(np.stack([f.rgb for f in source]))


def tiny(name: str, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return build_model(name, **{**TINY[name], **extra}).eval()


# --- all three --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TINY))
def test_state_carries_across_steps_and_resets(name, clip):
    model = tiny(name)
    with torch.no_grad():
        first, state = model.step(clip[:1], model.initial_state())
        again, _ = model.step(clip[:1], model.initial_state())
        assert torch.equal(first, again)          # a fresh stream is deterministic
        for t in range(1, 4):
            carried, state = model.step(clip[t:t + 1], state)
        fresh, _ = model.step(clip[3:4], model.initial_state())
    assert carried.shape == (1, 11, H, W)
    assert not torch.allclose(carried, fresh, atol=1e-4)   # the past frames changed the output


@pytest.mark.parametrize("name", sorted(TINY))
def test_gradient_wrt_frame_is_finite_and_nonzero_with_detached_state(name, clip):
    model = tiny(name)
    with torch.no_grad():
        _, state = model.step(clip[:1], model.initial_state())
        _, state = model.step(clip[1:2], state)
    frame = clip[2:3].clone().requires_grad_()
    logits, nxt = model.step(frame, state)
    loss = torch.nn.functional.cross_entropy(logits, logits.argmax(1))
    loss.backward()
    assert torch.isfinite(frame.grad).all() and frame.grad.abs().sum() > 0
    tensors = [v for v in _tensors(nxt)]
    assert tensors and not any(t.requires_grad for t in tensors)


SHIPPED = [info.name for info in list_models() if info.name in TINY and info.checkpoint]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_backbone_streams_resets_and_back_propagates(name, dataset):
    """The trained checkpoint on real frames: the state carries the past, a new stream
    forgets it, and d loss / d frame is finite and non-zero with the state detached."""
    frames = to_tensor(np.stack([f.rgb for f in open_video(
        dataset("videos") / "solidWhiteRight.mp4", size=(192, 144), max_frames=4)]))
    model = load_model(name)
    with torch.no_grad():
        state = model.initial_state()
        for t in range(3):
            _, state = model.step(frames[t:t + 1], state)
        fresh, _ = model.step(frames[3:4], model.initial_state())
        again, _ = model.step(frames[3:4], model.initial_state())
    assert torch.equal(fresh, again)
    frame = frames[3:4].clone().requires_grad_()
    carried, nxt = model.step(frame, state)
    assert carried.shape == (1, 11, 144, 192)
    assert not torch.allclose(carried, fresh, atol=1e-4)
    loss = torch.nn.functional.cross_entropy(carried, carried.argmax(1))
    loss.backward()
    assert torch.isfinite(frame.grad).all() and frame.grad.abs().sum() > 0
    assert not any(t.requires_grad for t in _tensors(nxt))


def _tensors(state):
    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, (list, tuple)):
        for s in state:
            yield from _tensors(s)
    elif hasattr(state, "__dataclass_fields__"):
        for key in state.__dataclass_fields__:
            yield from _tensors(getattr(state, key))


@pytest.mark.parametrize("name", sorted(TINY))
def test_checkpoint_round_trip_and_cost(name, tmp_path, clip):
    model = tiny(name)
    path = tmp_path / f"{name}.pt"
    save_checkpoint(model, name, TINY[name], path, card={"resolution": [H, W]})
    loaded = load_model(path)
    with torch.no_grad():
        assert torch.equal(model(clip[:1]), loaded(clip[:1]))
    cost = model.cost(H, W)
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert cost.macs > 0 and (cost.height, cost.width) == (H, W)
    assert model.cost(2 * H, 2 * W).macs > 3 * cost.macs   # grows with the pixels


@pytest.mark.parametrize("name", sorted(TINY))
def test_state_from_another_resolution_is_rejected(name, clip):
    model = tiny(name)
    with torch.no_grad():
        _, state = model.step(clip[:1], None)
        with pytest.raises(ValueError, match="initial_state"):
            model.step(torch.rand(1, 3, 2 * H, 2 * W), state)


# --- StreamDEQ --------------------------------------------------------------------------------
def test_streamdeq_static_video_stream_is_the_unrolled_fixed_point_iteration(clip):
    """Eq. 6 on a still frame: K frames of M iterations = K*M unrollings from zeros."""
    model: StreamDEQ = tiny("streamdeq", iterations=3)
    frame = clip[:1]
    with torch.no_grad():
        state = None
        for _ in range(4):
            _, state = model.step(frame, state)
        x = model.injection(frame)
        unrolled = model.unroll(model.zeros(x), x, 12)
    for a, b in zip(state, unrolled, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_streamdeq_streaming_converges_to_the_converged_solve(clip):
    """The distance of the streamed z to the reference z* shrinks and ends near zero."""
    model: StreamDEQ = tiny("streamdeq", iterations=2)
    frame = clip[:1]
    ref = model.pack(model.converged(frame, max_iter=200, tol=1e-6))
    assert model.last_stats.residual < 1e-5    # at this seed and frame f is a contraction
    dists, state = [], None
    with torch.no_grad():
        for _ in range(30):
            logits, state = model.step(frame, state)
            dists.append(float((model.pack(state) - ref).norm() / ref.norm()))
        converged_logits = model.logits(model.unpack(ref, model.injection(frame)), (H, W))
    assert dists[-1] < 1e-3 < dists[0]
    assert all(b <= a * 1.01 for a, b in zip(dists, dists[1:], strict=False))
    assert torch.equal(logits.argmax(1), converged_logits.argmax(1))


def test_anderson_solves_a_linear_fixed_point():
    torch.manual_seed(0)
    a = torch.randn(16, 16)
    a = 0.9 * a / torch.linalg.matrix_norm(a, ord=2)
    b = torch.randn(2, 16)
    exact = torch.linalg.solve(torch.eye(16) - a, b.t()).t()
    z, stats = anderson(lambda z: z @ a.t() + b, torch.zeros(2, 16), max_iter=60, tol=1e-7)
    assert torch.allclose(z, exact, atol=1e-4) and stats.iterations < 60


def test_streamdeq_il_training_uses_the_implicit_gradient(clip):
    """IL: the backward of the Anderson solve runs the adjoint fixed point (Eq. 3); for a
    contractive f it matches back-propagation through many unrollings, which the one-step
    (Jacobian-free) gradient of eval mode does not."""
    grads = {}
    torch.manual_seed(5)
    weights = torch.randn(1, 11, H, W)
    for key, solver, training in (("implicit", "anderson", True), ("unrolled", "unroll", True),
                                  ("one-step", "anderson", False)):
        model = tiny("streamdeq", solver=solver, stochastic=False, train_iterations=80,
                     frame_iterations=80, tol=1e-6).train(training)
        x = clip[:1].clone().requires_grad_()
        (model(x) * weights).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        grads[key] = x.grad

    def rel(key):
        return float((grads[key] - grads["unrolled"]).norm() / grads["unrolled"].norm())

    assert rel("implicit") < 0.1 < 0.5 < rel("one-step")


def test_streamdeq_sur_draws_the_unrolling_count_per_batch(clip, monkeypatch):
    model: StreamDEQ = tiny("streamdeq", train_iterations=5).train()
    counts = []
    original = model.unroll
    monkeypatch.setattr(model, "unroll", lambda z, x, n: counts.append(n) or original(z, x, n))
    torch.manual_seed(1)
    for _ in range(12):
        model(clip[:2])
    assert set(counts) <= set(range(1, 6)) and len(set(counts)) > 2
    counts.clear()
    model.stochastic = False
    model(clip[:2])
    assert counts == [5]


# --- adaptive propagation ---------------------------------------------------------------------
def test_spatially_variant_conv_with_a_delta_kernel_shifts_features():
    feats = torch.randn(1, 3, 6, 7)
    weights = torch.zeros(1, 9, 6, 7)
    weights[:, 4] = 1.0                       # the centre tap: identity
    assert torch.allclose(spatially_variant_conv(feats, weights), feats)
    weights = torch.zeros(1, 9, 6, 7)
    weights[:, 5] = 1.0                       # the right neighbour, shared by all channels
    out = spatially_variant_conv(feats, weights)
    assert torch.allclose(out[..., :-1], feats[..., 1:]) and (out[..., -1] == 0).all()
    with pytest.raises(ValueError):
        spatially_variant_conv(feats, torch.zeros(1, 8, 6, 7))


def test_propagation_kernels_are_softmax_normalised(clip):
    model: AdaptivePropagation = tiny("adaptive_propagation")
    with torch.no_grad():
        low = model.low_features(clip[:2])
        w = model.kernels(low[:1], low[1:])
    assert w.shape[1] == 25 and torch.allclose(w.sum(1), torch.ones(1))


def _kinds(model, frames):
    kinds, state = [], None
    with torch.no_grad():
        for t in range(frames.shape[0]):
            _, state = model.step(frames[t:t + 1], state)
            kinds.append(state.last_kind)
    return kinds, state


def test_key_frame_selector_threshold_decides_key_frames(clip):
    model: AdaptivePropagation = tiny("adaptive_propagation", low_latency=False)
    with torch.no_grad():
        low = model.low_features(clip)
        devs = model.selector(low[:1].expand_as(low[1:]), low[1:])
    model.threshold = 1.0
    assert _kinds(model, clip)[0] == ["full"] + ["propagated"] * 7
    model.threshold = 0.0
    assert _kinds(model, clip)[0] == ["full"] * 8
    model.threshold = float(devs[0]) + 1e-4    # just above frame 1's predicted deviation
    kinds, _ = _kinds(model, clip)
    assert kinds[1] == "propagated"
    model.threshold, model.key_interval = 0.0, 3   # the fixed schedule ignores the selector
    assert _kinds(model, clip)[0] == ["full", "propagated", "propagated", "full",
                                      "propagated", "propagated", "full", "propagated"]


def test_low_latency_scheduling_adopts_the_slow_track_k_frames_later(clip):
    model: AdaptivePropagation = tiny("adaptive_propagation", threshold=0.0,
                                      slow_track_frames=3)
    kinds, state = [], None
    with torch.no_grad():
        for t in range(8):
            _, state = model.step(clip[t:t + 1], state)
            kinds.append(state.last_kind)
            if t == 1:
                fast_high = state.key_high
            if t == 3:
                adopted = state
    # key frames at 1 and 4: fast track, slow track over frames 1, 2, 3, no new key meanwhile
    assert kinds == ["full", "fast-key", "propagated", "propagated", "fast-key",
                     "propagated", "propagated", "fast-key"]
    assert adopted.slow is None and adopted.key_frame == 1
    with torch.no_grad():
        exact = model.high_features(model.low_features(clip[1:2]))
    assert torch.allclose(adopted.key_high, exact, atol=1e-5)   # Sh's result replaced the cache
    assert not torch.allclose(fast_high, exact, atol=1e-3)      # ... which held the fast track


def test_low_latency_lowers_the_worst_step_cost():
    model: AdaptivePropagation = tiny("adaptive_propagation")
    costs = {k: v.macs for k, v in model.cost_breakdown(H, W).items()}
    assert costs["propagated"] < costs["fast-key"] < costs["key"]
    assert costs["propagated"] < costs["full"]
    assert model.cost(H, W).macs == costs["propagated"]


def test_propagation_stage_trains_only_the_propagation_and_selector(clip):
    model: AdaptivePropagation = tiny("adaptive_propagation", stage="propagation").train()
    assert not model.lower.training and model.adapt.training
    labels = torch.randint(0, 11, (2, 4, H, W))
    frames = torch.stack([clip[:4], clip[4:]])
    model.clip_loss(frames, labels, None).backward()
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {"selector", "kernels", "adapt", "fuse"}
    with pytest.raises(RuntimeError, match="clips"):
        model(clip[:1])


# --- StreamFormer -----------------------------------------------------------------------------
def _with_temporal_weights(model: StreamFormer) -> StreamFormer:
    """Open the zero-initialised gates and LoRA so the temporal path matters."""
    for block in model.blocks:
        block.gate.data.fill_(0.8)
        block.qkv_s.lora_b.weight.data.normal_(0, 0.1)
    return model


def test_streamformer_kv_cache_gives_the_recomputed_logits(clip):
    model = _with_temporal_weights(tiny("streamformer"))
    with torch.no_grad():
        recomputed = model.forward_clip(clip[None])[0]     # all 8 frames, causal window mask
        state, streamed = None, []
        for t in range(8):
            logits, state = model.step(clip[t:t + 1], state)
            streamed.append(logits[0])
    assert torch.allclose(torch.stack(streamed), recomputed, atol=1e-4)
    assert isinstance(state, KVCache) and state.frames == 8
    assert state.keys[0].shape[-2] == model.window - 1     # bounded: the last window-1 frames


def test_streamformer_temporal_attention_is_causal(clip):
    model = _with_temporal_weights(tiny("streamformer"))
    changed = clip.clone()
    changed[5:] = torch.rand_like(changed[5:])
    with torch.no_grad():
        a, b = model.forward_clip(clip[None])[0], model.forward_clip(changed[None])[0]
    assert torch.allclose(a[:5], b[:5], atol=1e-5)            # the future is never seen
    assert not torch.allclose(a[6], b[6], atol=1e-3)


def test_streamformer_zero_gate_makes_it_an_image_model(clip):
    model = tiny("streamformer")            # gates and LoRA at their zero initialisation
    model.pos_time.data.zero_()             # the only temporal input left
    with torch.no_grad():
        clip_logits = model.forward_clip(clip[None])[0]
        frame_logits = torch.cat([model.step(clip[t:t + 1], None)[0] for t in range(8)])
    assert torch.allclose(clip_logits, frame_logits, atol=1e-5)


@pytest.mark.parametrize("stage,trained,frozen", [
    ("image", {"qkv_s.base", "proj_s", "mlp"}, {"qkv_t", "proj_t", "gate", "lora_a", "lora_b"}),
    ("video", {"qkv_t", "proj_t", "gate", "lora_a", "lora_b", "mlp"}, {"qkv_s.base", "proj_s"}),
])
def test_streamformer_stages_freeze_the_right_weights(stage, trained, frozen, clip):
    model = _with_temporal_weights(tiny("streamformer", stage=stage)).train()
    labels = torch.randint(0, 11, (1, 3, H, W))
    model.clip_loss(clip[None, :3], labels, None).backward()
    has_grad = {n for n, p in model.named_parameters()
                if p.grad is not None and p.grad.abs().sum() > 0}

    def hit(part):
        return any(n.startswith("blocks.0.") and part in n for n in has_grad)

    assert all(hit(p) for p in trained) and not any(hit(p) for p in frozen)
    assert all(p.requires_grad for p in model.parameters())   # optimiser groups unchanged


def test_streamformer_cost_is_flat_in_stream_length():
    model = tiny("streamformer")
    from torch.utils.flop_counter import FlopCounterMode
    frame = torch.zeros(1, 3, H, W)
    macs, state = [], None
    with torch.no_grad():
        for _ in range(10):
            counter = FlopCounterMode(display=False)
            with counter:
                _, state = model.step(frame, state)
            macs.append(counter.get_total_flops())
    assert macs[model.window - 1:] == [macs[-1]] * (10 - model.window + 1)
    assert macs[0] < macs[-1]
    assert model.cost(H, W).macs == macs[-1] // 2


def test_builders_reject_bad_configs():
    with pytest.raises(ValueError, match="solver"):
        build_model("streamdeq", solver="broyden-ish")
    with pytest.raises(ValueError, match="threshold"):
        build_model("adaptive_propagation", threshold=2.0)
    with pytest.raises(ValueError, match="slow_track_frames"):
        build_model("adaptive_propagation", slow_track_frames=0)
    with pytest.raises(ValueError, match="stage"):
        build_model("streamformer", stage="audio")
    with pytest.raises(ValueError, match="heads"):
        build_model("streamformer", dim=30, heads=4)


def test_propagation_state_is_plain_data(clip):
    model = tiny("adaptive_propagation")
    with torch.no_grad():
        _, state = model.step(clip[:1], None)
    assert isinstance(state, PropagationState) and state.frame == 1 and state.key_frame == 0


# --- training through the shared trainer (edge.training), stage by stage -----------------------
@pytest.mark.slow
@pytest.mark.parametrize("name,stages", [
    ("streamdeq", [({}, False)]),
    ("adaptive_propagation", [({"stage": "basic"}, False), ({"stage": "propagation"}, True)]),
    ("streamformer", [({"stage": "image"}, False), ({"stage": "video"}, True)]),
])
def test_stages_train_and_resume_into_the_next(name, stages, dataset, tmp_path):
    """Each stage runs a few batches; the next resumes the run; frozen weights stay put."""
    from itertools import islice

    from edge.training.clips import clip_batches
    from edge.training.data import Augment, load_camvid, still_batches
    from edge.training.trainer import TrainConfig, train

    camvid = dataset("camvid")
    stills = load_camvid(camvid, "train", (H, W), limit=24)
    augment = Augment(crop=(H, W))
    torch.manual_seed(0)                       # as the trainer does before building (seed 0)
    initial = build_model(name, **TINY[name], **stages[0][0]).state_dict()
    for epoch, (config, clips) in enumerate(stages, start=1):
        cfg = TrainConfig(name=name, data=str(camvid), out=str(tmp_path), epochs=epoch,
                          resolution=(H, W), crop=(H, W), batch_size=4,
                          model_config={**TINY[name], **config}, val_limit=4)
        if clips:
            def batches(rng):
                return islice(clip_batches(stills, 4, 3, augment, rng), 3)
        else:
            def batches(rng):
                return islice(still_batches(stills, 4, augment, rng), 3)
        record = train(cfg, resume=epoch > 1, batches=batches, batches_per_epoch=3,
                       progress=False, log=lambda _: None)
        assert np.isfinite(record["train_loss"]) and record["epoch"] == epoch
        model = load_model(tmp_path / "model.pt")
        if epoch == 1:
            first = {k: v.clone() for k, v in model.state_dict().items()}
    after = model.state_dict()
    assert any(not torch.equal(after[k], initial[k]) for k in after)
    frozen = {"adaptive_propagation": ("lower.", "higher.", "classifier."),
              "streamformer": ("qkv_s.base", "proj_s")}.get(name)
    if frozen:   # the second stage changed weights, none of the frozen ones (BN stats included)
        changed = {k for k in after if not torch.equal(after[k], first[k])}
        assert changed and not any(part in k for k in changed for part in frozen)
