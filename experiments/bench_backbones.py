"""Per-frame time (ms, this CPU) and multiply-adds of every registered edge model at 360x480.

For each name in the registry: the shipped checkpoint when there is one (else the builder's
default configuration, untrained: timing only), timed as a stream of frames through `step`
with the state carried (steady state after warm-up), plus the time of forward + backward to
the input frame (what STAC's gradient step costs). Prints one JSON document.

    python experiments/bench_backbones.py [--height 360 --width 480 --frames 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

from edge.models.registry import build_model, list_models, load_model


def time_model(model: torch.nn.Module, frames: torch.Tensor, warmup: int) -> dict:
    """Median ms of a streaming step (state carried) and of forward + backward to the frame."""
    state = model.initial_state()
    step_ms = []
    with torch.no_grad():
        for i, frame in enumerate(frames):
            t0 = time.perf_counter()
            _, state = model.step(frame[None], state)
            if i >= warmup:
                step_ms.append(1000 * (time.perf_counter() - t0))
    grad_ms = []
    for i, frame in enumerate(frames[: warmup + 3]):
        x = frame[None].clone().requires_grad_(True)
        t0 = time.perf_counter()
        logits, _ = model.step(x, model.initial_state())
        logits.logsumexp(1).mean().backward()
        if i >= warmup:
            grad_ms.append(1000 * (time.perf_counter() - t0))
    return {"ms_per_frame": statistics.median(step_ms),
            "ms_per_frame_min": min(step_ms),
            "ms_forward_backward_to_input": statistics.median(grad_ms)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--frames", type=int, default=10, help="timed frames per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", nargs="*", help="subset of registered names")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    frames = torch.rand(args.frames + args.warmup, 3, args.height, args.width)
    rows = []
    for info in list_models():
        if args.models and info.name not in args.models:
            continue
        if info.checkpoint is not None:
            model, source = load_model(info.checkpoint), str(info.checkpoint.name)
        else:
            model, source = build_model(info.name).eval(), "untrained default config"
        cost = model.cost(args.height, args.width)
        row = {"model": info.name, "weights": source, "params": cost.params,
               "gmacs_per_frame": cost.macs / 1e9,
               "val_miou": info.card.get("val_miou")}
        row |= time_model(model, frames, args.warmup)
        rows.append(row)
        print(f"{info.name}: {row['ms_per_frame']:.1f} ms/frame, "
              f"{row['gmacs_per_frame']:.2f} GMACs", file=sys.stderr)
    print(json.dumps({"resolution": [args.height, args.width], "torch_threads":
                      torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                      "load_average_1min": os.getloadavg()[0], "models": rows}, indent=2))


if __name__ == "__main__":
    main()
