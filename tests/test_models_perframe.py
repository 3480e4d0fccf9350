"""Per-frame target networks (DRN-D-22, BiSeNet): layout, gradients, cost; every shipped
checkpoint (per-frame and streaming) against its model card."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from edge.models.base import NUM_CLASSES
from edge.models.drn import DRNSeg
from edge.models.registry import build_model, list_models, load_model
from edge.training.evaluation import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

# The published drn_d_22 segmentation state dict (fyu/drn DRNSeg on Cityscapes, 19 classes):
# every convolution weight and every batch-norm layer, by name, with its width-1.0 shape.
DRN_D_22_CONVS = {
    "base.0.0.weight": (16, 3, 7, 7),
    "base.1.0.weight": (16, 16, 3, 3),
    "base.2.0.weight": (32, 16, 3, 3),
    "base.3.0.conv1.weight": (64, 32, 3, 3),
    "base.3.0.conv2.weight": (64, 64, 3, 3),
    "base.3.0.downsample.0.weight": (64, 32, 1, 1),
    "base.3.1.conv1.weight": (64, 64, 3, 3),
    "base.3.1.conv2.weight": (64, 64, 3, 3),
    "base.4.0.conv1.weight": (128, 64, 3, 3),
    "base.4.0.conv2.weight": (128, 128, 3, 3),
    "base.4.0.downsample.0.weight": (128, 64, 1, 1),
    "base.4.1.conv1.weight": (128, 128, 3, 3),
    "base.4.1.conv2.weight": (128, 128, 3, 3),
    "base.5.0.conv1.weight": (256, 128, 3, 3),
    "base.5.0.conv2.weight": (256, 256, 3, 3),
    "base.5.0.downsample.0.weight": (256, 128, 1, 1),
    "base.5.1.conv1.weight": (256, 256, 3, 3),
    "base.5.1.conv2.weight": (256, 256, 3, 3),
    "base.6.0.conv1.weight": (512, 256, 3, 3),
    "base.6.0.conv2.weight": (512, 512, 3, 3),
    "base.6.0.downsample.0.weight": (512, 256, 1, 1),
    "base.6.1.conv1.weight": (512, 512, 3, 3),
    "base.6.1.conv2.weight": (512, 512, 3, 3),
    "base.7.0.weight": (512, 512, 3, 3),
    "base.8.0.weight": (512, 512, 3, 3),
    "seg.weight": (19, 512, 1, 1),
    "seg.bias": (19,),
    "up.weight": (19, 1, 16, 16),
}
DRN_D_22_BNS = {
    "base.0.1": 16, "base.1.1": 16, "base.2.1": 32,
    "base.3.0.bn1": 64, "base.3.0.bn2": 64, "base.3.0.downsample.1": 64,
    "base.3.1.bn1": 64, "base.3.1.bn2": 64,
    "base.4.0.bn1": 128, "base.4.0.bn2": 128, "base.4.0.downsample.1": 128,
    "base.4.1.bn1": 128, "base.4.1.bn2": 128,
    "base.5.0.bn1": 256, "base.5.0.bn2": 256, "base.5.0.downsample.1": 256,
    "base.5.1.bn1": 256, "base.5.1.bn2": 256,
    "base.6.0.bn1": 512, "base.6.0.bn2": 512, "base.6.0.downsample.1": 512,
    "base.6.1.bn1": 512, "base.6.1.bn2": 512,
    "base.7.1": 512, "base.8.1": 512,
}


def published_drn_d_22_state_dict() -> dict[str, torch.Tensor]:
    """A synthetic state dict with the published names and shapes (random values)."""
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in DRN_D_22_CONVS.items()}
    for k, c in DRN_D_22_BNS.items():
        sd[f"{k}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        sd[f"{k}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{k}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{k}.running_var"] = 1 + torch.rand(c, generator=g)
        sd[f"{k}.num_batches_tracked"] = torch.tensor(1000)
    return sd


def test_drn_d_22_loads_published_state_dict_by_name():
    model = DRNSeg(width=1.0, num_classes=19)
    published = published_drn_d_22_state_dict()
    own = model.state_dict()
    assert set(own) == set(published)
    assert all(own[k].shape == v.shape for k, v in published.items())
    model.load_state_dict(published, strict=True)
    assert torch.equal(model.base[6][1].conv2.weight, published["base.6.1.conv2.weight"])
    assert torch.equal(model.base[8][1].running_var, published["base.8.1.running_var"])


def test_drn_d_22_is_output_stride_8_with_dilated_degridding_tail():
    model = DRNSeg(width=0.25).eval()
    feats = model.base(torch.zeros(1, 3, 64, 96))
    assert feats.shape[-2:] == (8, 12)             # 64x96 / 8
    assert model.base[5][0].conv2.dilation == (2, 2)
    assert model.base[6][1].conv1.dilation == (4, 4)
    assert model.base[7][0].dilation == (2, 2)     # degridding: dilation 2 then 1, no residual
    assert model.base[8][0].dilation == (1, 1)
    assert not model.up.weight.requires_grad


def test_drn_up_is_bilinear_x8():
    model = DRNSeg(width=0.25, num_classes=2)
    flat = torch.ones(1, 2, 6, 8)
    up = model.up(flat)
    assert up.shape[-2:] == (48, 64)
    assert torch.allclose(up[..., 4:-4, 4:-4], torch.ones_like(up[..., 4:-4, 4:-4]))


MODELS = [("drn_d_22", {"width": 0.125}), ("drn_d_22", {"width": 0.125, "input_scale": 0.5}),
          ("bisenet", {"width": 0.25}),
          ("dabnet", {"channels": (8, 16, 32), "blocks": (1, 2), "dilations": (2, 4)})]


@pytest.mark.parametrize(("name", "config"), MODELS)
@pytest.mark.parametrize("train_mode", [False, True])
def test_gradient_wrt_frame_is_finite_and_nonzero(name, config, train_mode):
    torch.manual_seed(0)
    model = build_model(name, **config).train(train_mode)
    frame = torch.rand(2, 3, 72, 100, requires_grad=True)   # not a multiple of 8 on purpose
    logits, state = model.step(frame, model.initial_state())
    assert logits.shape == (2, NUM_CLASSES, 72, 100) and state is None
    target = logits.argmax(1).roll(5, dims=-1)              # a fake label, as STAC uses
    nn.functional.cross_entropy(logits, target).backward()
    grad = frame.grad
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    assert (grad[0] != 0).float().mean() > 0.5               # the whole frame gets a gradient


@pytest.mark.parametrize(("name", "config"), MODELS)
def test_cost_counts_every_convolution(name, config):
    model = build_model(name, **config).eval()
    total = [0]

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, nn.ConvTranspose2d):
            total[0] += inp[0].numel() * mod.out_channels // mod.groups * k
        else:
            total[0] += out.numel() * mod.in_channels // mod.groups * k

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 96))
    for h in handles:
        h.remove()
    cost = model.cost(64, 96)
    assert cost.macs == total[0]
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert model.cost(128, 192).macs == pytest.approx(4 * cost.macs, rel=0.02)


def test_width_scales_parameters_quadratically():
    full, half = (build_model("drn_d_22", width=w).cost(32, 32).params for w in (1.0, 0.5))
    assert 0.2 < half / full < 0.3


def test_invalid_width_is_rejected():
    with pytest.raises(ValueError, match="width"):
        build_model("drn_d_22", width=0)
    with pytest.raises(ValueError, match="width"):
        build_model("bisenet", width=-1)


SHIPPED = [info for info in list_models() if info.checkpoint is not None]
# registered architectures whose checkpoint is still being trained, with the reason
UNSHIPPED: dict[str, str] = {}


def test_a_per_frame_checkpoint_is_shipped():
    assert any(not load_model(info.checkpoint).streaming for info in SHIPPED), \
        "no per-frame checkpoint in edge/checkpoints"


def test_every_registered_model_has_a_shipped_checkpoint():
    assert {info.name for info in SHIPPED} == {info.name for info in list_models()} - set(UNSHIPPED)


@pytest.mark.parametrize("info", SHIPPED, ids=[i.name for i in SHIPPED])
def test_shipped_checkpoint_matches_its_card(info, dataset):
    card = info.card
    for key in ("resolution", "val_miou", "epochs", "seed", "wall_time_s", "subset_val_miou",
                "subset_images"):
        assert key in card, f"{info.name}: card lacks {key}"
    assert info.checkpoint.stat().st_size < 10 * 2**20
    md = info.checkpoint.with_suffix(".md").read_text()
    assert f"{100 * card['val_miou']:.2f}" in md           # the markdown card states the number
    result = evaluate(info.checkpoint, dataset("camvid"), split="val",
                      limit=card["subset_images"])
    assert result["images"] == card["subset_images"]
    assert abs(100 * result["miou"] - 100 * card["subset_val_miou"]) <= 0.5, json.dumps(result)


def test_models_list_marks_the_default_and_it_is_the_best_shipped_per_frame_model(capsys):
    """Issue 14: the default is a shipped per-frame model and the best of them on CamVid val
    (by the val mIoU measured onto its card)."""
    from stac.cli import main
    from stac.schemes import DEFAULT_MODEL

    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows if r["default"]] == [DEFAULT_MODEL]
    per_frame = [info for info in SHIPPED if not load_model(info.checkpoint).streaming]
    best = max(per_frame, key=lambda info: info.card["val_miou"])
    assert best.name == DEFAULT_MODEL
