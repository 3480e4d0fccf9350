"""DABNet (edge/models/dabnet.py): layout, size, gradients to the input, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edge.models.base import NUM_CLASSES
from edge.models.dabnet import PAPER_CONFIG, DABModule, DABNet
from edge.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"channels": (8, 16, 32), "blocks": (1, 2), "stem_convs": 1, "dilations": (2, 4)}


def test_logits_match_the_frame_size_and_the_state_passes_through():
    model = build_model("dabnet", **SMALL).eval()
    assert isinstance(model, DABNet) and not model.streaming
    with torch.no_grad():
        for h, w in ((64, 96), (71, 101)):               # odd sizes: every stride rounds up
            logits, state = model.step(torch.rand(2, 3, h, w), model.initial_state())
            assert logits.shape == (2, NUM_CLASSES, h, w) and state is None


def test_paper_configuration_has_the_papers_size():
    """Li et al. (2019): 0.76 M parameters; the default is the narrower CPU-sized variant."""
    paper = build_model("dabnet", **PAPER_CONFIG)
    params = sum(p.numel() for p in paper.parameters())
    assert 0.74e6 < params < 0.78e6
    assert len(paper.stage1) == 3 and len(paper.stage2) == 6
    assert [m.context[0][0].dilation for m in paper.stage2] == \
        [(4, 1), (4, 1), (8, 1), (8, 1), (16, 1), (16, 1)]
    default = build_model("dabnet")
    default_params = sum(p.numel() for p in default.parameters())
    assert 0.15e6 < default_params < 0.3e6
    assert len(default.stage1) == 1 and len(default.stage2) == 6


def test_dab_module_is_residual_with_depthwise_asymmetric_branches():
    block = DABModule(16, dilation=3).eval()
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    kernels = [(c.kernel_size, c.groups, c.dilation) for c in convs]
    assert kernels == [((3, 3), 1, (1, 1)),
                       ((3, 1), 8, (1, 1)), ((1, 3), 8, (1, 1)),
                       ((3, 1), 8, (3, 1)), ((1, 3), 8, (1, 3)),
                       ((1, 1), 1, (1, 1))]
    nn.init.zeros_(block.project.weight)                   # the residual branch switched off
    x = torch.randn(2, 16, 12, 10)
    with torch.no_grad():
        assert torch.equal(block(x), x)


@pytest.mark.parametrize("train_mode", [False, True])
def test_gradient_reaches_every_part_of_the_frame(train_mode):
    torch.manual_seed(0)
    model = build_model("dabnet", **SMALL).train(train_mode)
    frame = torch.rand(2, 3, 72, 100, requires_grad=True)
    logits, _ = model.step(frame, model.initial_state())
    target = logits.argmax(1).roll(5, dims=-1)              # a fake label, as STAC uses
    nn.functional.cross_entropy(logits, target).backward()
    assert torch.isfinite(frame.grad).all()
    assert (frame.grad[0] != 0).float().mean() > 0.5
    assert all(p.grad is not None for p in model.parameters())


def test_eval_is_deterministic_and_per_frame():
    torch.manual_seed(0)
    model = build_model("dabnet", **SMALL)
    model.train()
    with torch.no_grad():                                  # give batch norm real statistics
        model(torch.rand(4, 3, 64, 96))
    model.eval()
    frames = torch.rand(3, 3, 64, 96)
    with torch.no_grad():
        a, b = model(frames), model(frames)
        alone = model(frames[1:2])
    assert torch.equal(a, b)
    assert torch.allclose(a[1:2], alone, atol=1e-5)         # no batch coupling in eval mode


def test_bad_configurations_are_rejected():
    with pytest.raises(ValueError, match="dilations"):
        build_model("dabnet", blocks=(1, 3), dilations=(2, 4))
    with pytest.raises(ValueError, match="channels"):
        build_model("dabnet", channels=(8, 15, 32))
    with pytest.raises(ValueError, match="block"):
        build_model("dabnet", blocks=(0, 2), dilations=(2, 4))
