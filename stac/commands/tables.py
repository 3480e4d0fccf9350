"""`stac-sim tables build`: STAC's offline quantisation tables for a model (§IV-A)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stac.modelspec import MODEL_SPEC_HELP
from stac.options import parse_size


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tables", help="STAC's gradient-derived quantisation tables")
    sub = parser.add_subparsers(dest="tables_command", required=True, metavar="ACTION")
    p = sub.add_parser("build", help="average DCT gradients over sample frames -> L tables")
    p.add_argument("--model", required=True, help=f"the model: {MODEL_SPEC_HELP}")
    p.add_argument("--data", required=True,
                   help="sample frames: a CamVid root or split folder, a video, or 'default'")
    p.add_argument("--levels", type=int, default=32, help="number of tables L (default 32)")
    p.add_argument("--frames", type=int, default=50,
                   help="sample frames, evenly spaced over the source (default 50)")
    p.add_argument("--size", type=parse_size, default=None, help="resize frames to WxH")
    p.add_argument("--q-fine", type=float, default=1.0,
                   help="geometric-mean step of the finest table (default 1)")
    p.add_argument("--q-coarse", type=float, default=256.0,
                   help="geometric-mean step of the coarsest table (default 256)")
    p.add_argument("-o", "--out", required=True, type=Path, help="output FILE(.npz, + .json)")
    p.set_defaults(func=cmd_build)


def _checkpoint_hash(spec: str) -> str | None:
    """sha256 of the checkpoint or TorchScript file the tables were built from (None for
    untrained:NAME and module:function models; their `model_identity` says where from)."""
    import hashlib

    from edge.models.registry import checkpoint_path

    path = Path(spec) if Path(spec).is_file() else checkpoint_path(spec)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def cmd_build(args: argparse.Namespace) -> int:
    from edge.models.registry import ModelError, resolve_model
    from edge.tables import TableSpec, average_gradients, build_tables, save_tables
    from stac.frames import FrameError, open_source

    try:
        spec = TableSpec(levels=args.levels, q_fine=args.q_fine, q_coarse=args.q_coarse)
        model = resolve_model(args.model)
        if args.frames < 1:
            raise ValueError(f"--frames must be >= 1, got {args.frames}")
        source = open_source(args.data, size=args.size, fps=None)
        try:
            total = len(source)
        except TypeError:  # a container without a frame count: read it once to count
            total = sum(1 for _ in source)
        if total == 0:
            raise ValueError(f"{args.data}: no frames")
        pick = np.unique(np.linspace(0, total - 1, min(args.frames, total)).astype(int))
        wanted = set(pick.tolist())
        sample = [f.rgb for i, f in enumerate(source) if i in wanted]
    except (ModelError, FrameError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    averager = average_gradients(model, tqdm(sample, desc="gradients", unit="frame"))
    tables = build_tables(averager.mean(), averager.coefficients, spec)
    h, w = sample[0].shape[:2]
    tables.meta.update(checkpoint_sha256=_checkpoint_hash(args.model),
                       model_identity=getattr(model, "identity", None),
                       num_classes=model.num_classes)
    tables.meta.update(model=str(args.model), data=str(args.data), frames=len(sample),
                       frame_indices=pick.tolist(), width=w, height=h,
                       command="stac-sim " + " ".join(sys.argv[1:]))
    path = save_tables(tables, args.out)
    summary = {"out": str(path), "model": str(args.model), "frames": len(sample),
               "levels": tables.levels, "B_range": [float(tables.bounds[0]),
                                                    float(tables.bounds[-1])],
               "step_range": [float(tables.steps.min()), float(tables.steps.max())]}
    print(json.dumps(summary, indent=2))
    return 0
