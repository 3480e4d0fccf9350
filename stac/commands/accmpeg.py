"""`stac-sim accmpeg train`: AccMPEG's AccModel (device.accmodel) against an edge model."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

HELP = "AccMPEG's AccModel: train it against the edge model"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("accmpeg", help=HELP)
    sub = parser.add_subparsers(dest="accmpeg_command", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="label CamVid train and clip frames with the edge "
                                     "model's gradient tiles and train the AccModel's head; "
                                     "writes FILE (weights) and FILE.json (card); resumable")
    p.add_argument("--data", required=True, type=Path, help="CamVid root (train/, val/)")
    p.add_argument("--clips", default="default",
                   help="comma-separated videos whose frames are also trained on "
                        "('default' is bikes.mp4; empty: none)")
    p.add_argument("--clip-width", type=int, default=480, help="clip frames resized to "
                   "this width (aspect kept)")
    p.add_argument("--clip-every", type=int, default=5, help="every N-th clip frame")
    p.add_argument("--model", default=None, help="the edge model whose gradient tiles are "
                   "the labels (a shipped checkpoint name or path; default: the default model "
                   "stac.schemes.DEFAULT_MODEL)")
    p.add_argument("--extractor", default="bisenet", help="the model whose stem and 1/8 "
                   "stage are the frozen feature extractor (a bisenet checkpoint name or path; "
                   "default %(default)s: the project's stand-in for an ImageNet backbone)")
    p.add_argument("--out", required=True, type=Path, help="weights file (.pt)")
    p.add_argument("--work", type=Path, default=None,
                   help="folder of the label cache and checkpoint (default: OUT.work)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--limit", type=int, default=None,
                   help="first N CamVid train and val images only (quick checks)")
    p.set_defaults(func=cmd_train)


def _log(message: str) -> None:
    print(f"stac-sim accmpeg: {message}", file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from device.accmodel import AccModel, AccModelError
    from edge.models.registry import checkpoint_path, load_model
    from edge.training.accmodel import (
        TrainConfig,
        camvid_samples,
        clip_samples,
        label_samples,
        mask_agreement,
        sha256,
        train_head,
    )
    from stac.frames import FrameError
    from stac.schemes import DEFAULT_MODEL

    torch.set_num_threads(args.threads)
    args.model = args.model or DEFAULT_MODEL
    for name in ("epochs", "clip_width", "clip_every", "threads"):
        if getattr(args, name) < 1:
            print(f"stac-sim accmpeg train: --{name.replace('_', '-')} must be >= 1",
                  file=sys.stderr)
            return 2
    start = time.perf_counter()
    work = args.work or args.out.with_name(args.out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = load_model(args.model).eval()
        extractor = load_model(args.extractor).eval()
        torch.manual_seed(args.seed)  # the head's initial weights
        acc = AccModel.from_edge_model(extractor)
        train = camvid_samples(args.data, "train", args.limit)
        for clip in filter(None, (c.strip() for c in args.clips.split(","))):
            train += clip_samples(clip, args.clip_width, args.clip_every)
        val = camvid_samples(args.data, "val", args.limit)
    except (AccModelError, FrameError, OSError, ValueError) as e:
        print(f"stac-sim accmpeg train: {e}", file=sys.stderr)
        return 2
    _log(f"{len(train)} training and {len(val)} validation frames")
    label_samples(model, train + val, work / "labels.npz", log=_log)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed)
    losses = train_head(acc, train, config, work / "checkpoint.pt", log=_log)
    val_all = mask_agreement(acc, val)
    val_10 = mask_agreement(acc, val[:10])
    train_agree = mask_agreement(acc, train)
    command = ["stac-sim", "accmpeg", "train", "--data", str(args.data), "--clips", args.clips,
               "--clip-width", str(args.clip_width), "--clip-every", str(args.clip_every),
               "--model", args.model, "--extractor", args.extractor, "--out", str(args.out),
               "--epochs", str(args.epochs),
               "--lr", str(args.lr), "--seed", str(args.seed), "--threads", str(args.threads)]
    if args.limit is not None:
        command += ["--limit", str(args.limit)]
    card = {
        "command": shlex.join(command),
        "edge_model": args.model,
        "edge_weights_sha256": sha256(checkpoint_path(args.model)),
        "extractor": args.extractor,
        "extractor_weights_sha256": sha256(checkpoint_path(args.extractor)),
        "data": {"camvid_train": sum(s.name.startswith("camvid/") for s in train),
                 "clips": sorted({s.name.split("/")[1] for s in train
                                  if s.name.startswith("clip/")}),
                 "clip_frames": sum(s.name.startswith("clip/") for s in train),
                 "camvid_val": len(val)},
        "seed": args.seed, "epochs": args.epochs, "lr": args.lr, "batch": config.batch,
        "threads": args.threads,
        "wall_s": None,  # filled below (this session only; a resumed run adds its own)
        "train_loss": [round(v, 5) for v in losses],
        "threshold": 0.2,
        "val": asdict(val_all), "val_first10": asdict(val_10), "train": asdict(train_agree),
        "load_average": list(os.getloadavg()),
    }
    card["wall_s"] = round(time.perf_counter() - start, 1)
    acc.save(args.out, card)
    print(json.dumps({k: card[k] for k in ("val", "val_first10", "train", "wall_s")}, indent=2))
    return 0
