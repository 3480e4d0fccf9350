"""`stac-sim tuner train`: the B/fps tuner network of STAC §VI from per-second profiles."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tuner", help="the B/fps tuner network (STAC §VI)")
    sub = parser.add_subparsers(dest="tuner_command", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="train the tuner on profiles, validate on a held-back "
                                     "video; writes FILE (weights) and FILE.json (card)")
    p.add_argument("profiles", type=Path, help="profile CSV (edge.profiles)")
    p.add_argument("--out", required=True, type=Path, help="weights file (.pt)")
    p.add_argument("--val-video", default=None,
                   help="the held-back video (default: the last profiled video by name)")
    p.add_argument("--variant", default="nn", choices=("nn", "nn-no-c", "nn-no-d"),
                   help="the network or an ablation without one input (default %(default)s)")
    p.add_argument("--epochs", type=int, default=2000, help="(default %(default)s)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's step size (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default %(default)s)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from edge.profiles import ProfileError, read_profiles
    from edge.tuner_net import train

    torch.set_num_threads(1)  # a tiny full-batch MLP: threads only add overhead
    try:
        rows = read_profiles(args.profiles)
        val = args.val_video or sorted({r.video for r in rows})[-1]
        tuner, result = train(rows, val, variant=args.variant, seed=args.seed,
                              epochs=args.epochs, lr=args.lr)
    except (ProfileError, ValueError) as e:
        print(f"stac-sim tuner train: {e}", file=sys.stderr)
        return 2
    tuner.card.update(profiles=str(args.profiles), command=shlex.join([
        "stac-sim", "tuner", "train", str(args.profiles), "--out", str(args.out),
        "--val-video", val, "--variant", args.variant, "--epochs", str(args.epochs),
        "--lr", repr(args.lr),
        "--seed", str(args.seed)]))
    tuner.save(args.out)
    print(json.dumps(result.__dict__, indent=2))
    return 0
