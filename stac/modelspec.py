"""The `--model` forms, in words (torch-free, so command-line help loads fast)."""

MODEL_SPEC_HELP = (
    "a shipped model name, a project checkpoint FILE.pt, a TorchScript file, "
    "package.module:function returning a torch.nn.Module (float RGB (N, 3, H, W) in [0, 1] "
    "-> logits (N, C, h, w)), or untrained:NAME (mechanics only)")
