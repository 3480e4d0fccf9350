"""`stac-sim models {list,train,eval}`: the edge models, their training and evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _resolution(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 360x480, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return h, w


def _scale(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW,HIGH such as 0.5,2.0, got {text!r}") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"scale needs 0 < LOW <= HIGH, got {text!r}")
    return low, high


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, train and evaluate edge models")
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    p = sub.add_parser("list", help="registered models with their shipped checkpoints")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", help="train a model on CamVid (resumable, validated per epoch)")
    p.add_argument("name", help="registered model name (see `models list`)")
    p.add_argument("--data", required=True, type=Path, help="CamVid folder (train/, val/, ...)")
    p.add_argument("--out", required=True, type=Path, help="run folder for checkpoints and logs")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--resolution", type=_resolution, default=(360, 480),
                   help="HxW the data is resized to and validated at (default 360x480)")
    p.add_argument("--crop", type=_resolution, default=(240, 320),
                   help="HxW of the random training crops (default 240x320)")
    p.add_argument("--scale", type=_scale, default=(0.7, 1.4),
                   help="LOW,HIGH range of the random rescaling before cropping (default 0.7,1.4)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4,
                   help="weight decay of conv/linear weights (AdamW: decoupled; default 1e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-config", type=_key_value, nargs="*", default=[], metavar="KEY=VALUE",
                   help="builder arguments, e.g. width=0.25")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (1 is fastest on a CPU shared with other jobs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    p.add_argument("--save-best", action="store_true",
                   help="also keep OUT/best.pt, the epoch with the highest val mIoU so far")
    p.add_argument("--val-limit", type=int, default=None,
                   help="validate each epoch on the first N val images only (CPU time)")
    p.add_argument("--clip-length", type=int, default=1,
                   help="temporal models: train on clips of this many frames (edge.training.clips)")
    p.add_argument("--videos", nargs="*", default=[],
                   help="real clips to pseudo-label ('default' is bikes.mp4); needs "
                        "--pseudo-labeler and --clip-length >= 2")
    p.add_argument("--pseudo-labeler", default=None,
                   help="checkpoint (name or path) whose output labels the --videos")
    p.add_argument("--video-fraction", type=float, default=0.5,
                   help="fraction of clip batches drawn from the --videos")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a model on a CamVid split; prints JSON")
    p.add_argument("model", help="registered name (shipped checkpoint) or checkpoint path")
    p.add_argument("--data", required=True, type=Path, help="CamVid folder")
    p.add_argument("--split", choices=("train", "val", "test"), default="val",
                   help="train: the fit (its gap to val is the overfitting check)")
    p.add_argument("--resolution", type=_resolution, default=None,
                   help="HxW to evaluate at (default: the checkpoint's card, else 360x480)")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--batch-size", type=int, default=4)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="ship a run's model.pt as edge/checkpoints/NAME.pt + .md")
    p.add_argument("run_model", type=Path, help="a run's model.pt")
    p.add_argument("--name", required=True, help="checkpoint name (the registered model name)")
    p.add_argument("--data", required=True, type=Path, help="CamVid folder for the val numbers")
    p.add_argument("--notes", default="",
                   help="markdown appended to the card (deviations); @FILE reads a file")
    p.add_argument("--dest", type=Path, default=None, help="folder (default edge/checkpoints)")
    p.set_defaults(func=cmd_export)


def cmd_list(args: argparse.Namespace) -> int:
    from edge.models.registry import list_models
    from stac.schemes import DEFAULT_MODEL

    rows = []
    for info in list_models():
        card = info.card
        rows.append({"name": info.name, "default": info.name == DEFAULT_MODEL,
                     "params": card.get("params"),
                     "checkpoint": str(info.checkpoint) if info.checkpoint else None,
                     "resolution": "x".join(map(str, card["resolution"]))
                     if card.get("resolution") else None,
                     "val_miou": card.get("val_miou")})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':<22}{'params':>10}  {'resolution':<11}{'val mIoU':>9}  checkpoint"
    print(header)
    print("-" * len(header))
    for r in rows:
        params = f"{r['params'] / 1e6:.2f}M" if r["params"] else "-"
        miou = f"{100 * r['val_miou']:.2f}" if r["val_miou"] is not None else "-"
        name = f"{r['name']} (default)" if r["default"] else r["name"]
        print(f"{name:<22}{params:>10}  {r['resolution'] or '-':<11}{miou:>9}  "
              f"{r['checkpoint'] or '(none shipped)'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from edge.training.trainer import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(name=args.name, data=str(args.data), out=str(args.out),
                      epochs=args.epochs, resolution=args.resolution, crop=args.crop,
                      scale=args.scale, batch_size=args.batch_size, optimizer=args.optimizer,
                      lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                      model_config=dict(args.model_config),
                      val_limit=args.val_limit, clip_length=args.clip_length,
                      videos=tuple(args.videos), pseudo_labeler=args.pseudo_labeler,
                      video_fraction=args.video_fraction, save_best=args.save_best)
    record = train(cfg, resume=args.resume, log=lambda m: print(m, flush=True))
    print(json.dumps({k: v for k, v in record.items() if k != "val_per_class_iou"}))
    print(f"checkpoint: {Path(args.out) / 'model.pt'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edge.models.registry import ModelError
    from edge.training.evaluation import evaluate
    from stac.frames import FrameError

    try:
        result = evaluate(args.model, args.data, split=args.split, resolution=args.resolution,
                          limit=args.limit, batch_size=args.batch_size, progress=True)
    except (ModelError, FrameError) as exc:
        print(f"stac-sim models eval: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edge.models.registry import CHECKPOINT_DIR
    from edge.training.evaluation import export_checkpoint

    notes = Path(args.notes[1:]).read_text() if args.notes.startswith("@") else args.notes
    out = export_checkpoint(args.run_model, args.name, args.data, notes,
                            dest=args.dest or CHECKPOINT_DIR)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0
