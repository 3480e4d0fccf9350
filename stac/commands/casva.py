"""`stac-sim casva`: CASVA's learned configuration policy (STAC §VIII-A), Pensieve-style.

`profile` measures, with the real codec and model, per-segment (1 s) size and accuracy
tables for every (resolution, fps, QP) of a grid on the training clips (a sweep on the
experiment library over a constant high-bandwidth trace, read back with
`edge.profiles.rows_from_run`); `train` fits the PPO policy in the fast table-replay
environment (`edge.casva_env`) over real traces and writes the policy and its card;
`pre-encode` writes the side table of CASVA's content indicator (each second's first frame
pre-encoded at the reference configuration, the device's own function) for the clips.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

#: the training clips at 480-pixel width (`--size` of the runs); bikes is the shipped clip
CLIPS = {"bikes": ("default", "480x204"),
         "solidWhiteRight": ("{data}/videos/solidWhiteRight.mp4", "480x270")}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("casva", help="CASVA's learned resolution/fps/QP policy")
    sub = parser.add_subparsers(dest="casva_command", required=True, metavar="ACTION")
    p = sub.add_parser("profile", help="measure per-segment size/accuracy tables for every "
                                       "(resolution, fps, QP) of the grid (a resumable sweep)")
    p.add_argument("--out", required=True, type=Path,
                   help="folder: OUT/sweep (the runs) and OUT/tables.csv")
    p.add_argument("--clips", default=",".join(CLIPS),
                   help=f"comma list of {', '.join(CLIPS)} (default all)")
    p.add_argument("--model", default=None,
                   help="the edge model (default: the default model, stac.schemes.DEFAULT_MODEL)")
    p.add_argument("--workers", type=int, default=1, help="parallel runs (default %(default)s)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of each clip (default: the whole clip)")
    p.set_defaults(func=cmd_profile)

    e = sub.add_parser("pre-encode", help="the side table of the tables' content indicator: "
                                          "each second's first frame pre-encoded at the "
                                          "reference configuration")
    e.add_argument("--out", required=True, type=Path, help="CSV (video, second, pre_kbits)")
    e.add_argument("--clips", default=",".join(CLIPS),
                   help=f"comma list of {', '.join(CLIPS)} (default all)")
    e.set_defaults(func=cmd_pre_encode)

    t = sub.add_parser("train", help="train the PPO policy on the tables over real traces "
                                     "(fast table-replay environment); writes FILE and "
                                     "FILE.json (card) and the reward curve beside it")
    t.add_argument("tables", type=Path, help="tables CSV of `stac-sim casva profile`")
    t.add_argument("--out", required=True, type=Path, help="policy file (.pt)")
    t.add_argument("--traces", type=Path, default=None,
                   help="trace root with one folder per family (default: $STAC_DATA/traces)")
    t.add_argument("--updates", type=int, default=300, help="PPO updates (default %(default)s)")
    t.add_argument("--envs", type=int, default=64,
                   help="parallel episodes per update (default %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="(default %(default)s)")
    t.add_argument("--pre-encoding", type=Path, default=None,
                   help="side table of `casva pre-encode` (default: the shipped "
                        "edge/checkpoints/casva_pre_encoding.csv; `none`: no pre-encoding "
                        "indicator, always 0, the ablation)")
    t.set_defaults(func=cmd_train)


def profile_spec(clips: list[str], trace: Path, model: str,
                 duration: float | None = None) -> dict:
    """The sweep of `casva profile`: every grid (scale, fps, qp) on each clip."""
    from edge.casva_env import FPS, QPS, SCALES
    from stac.data import data_root

    grids = []
    for name in clips:
        if name not in CLIPS:
            raise ValueError(f"unknown clip {name!r}; known: {', '.join(CLIPS)}")
        video, size = CLIPS[name]
        grids.append({"video": video.format(data=data_root()), "size": size,
                      "scheme": "casva", "scale": list(SCALES), "fps": list(FPS),
                      "qp": list(QPS)})
    base = {"trace": str(trace), "model": model, "tuner": "fixed"}  # fixed configurations
    if duration is not None:
        base["duration"] = duration
    return {"base": base, "grid": grids}


def cmd_profile(args: argparse.Namespace) -> int:
    import numpy as np

    from edge.casva_env import tables_from_runs, write_tables
    from stac.experiment import sweep
    from stac.schemes import DEFAULT_MODEL
    from stac.traces import Trace, save_trace

    args.model = args.model or DEFAULT_MODEL
    args.out.mkdir(parents=True, exist_ok=True)
    trace = args.out / "bandwidth.csv"
    save_trace(Trace(np.array([0.0]), np.array([200_000.0]), name="constant", end_s=60.0),
               trace, comment="constant 200 Mbps (casva profile: no drops, no queues)")
    try:
        spec = profile_spec(args.clips.split(","), trace.resolve(), args.model, args.duration)
    except ValueError as e:
        print(f"stac-sim casva profile: {e}", file=sys.stderr)
        return 2
    runs = sweep(spec, args.out / "sweep", workers=args.workers)
    failed = runs[runs["status"] != "ok"]
    for r in failed.itertuples():
        print(f"run {r.run_id} failed: {r.error}", file=sys.stderr)
    dirs = [args.out / "sweep" / "runs" / rid for rid in runs[runs["status"] == "ok"]["run_id"]]
    path = write_tables(tables_from_runs(dirs), args.out / "tables.csv")
    print(f"{len(dirs)} runs -> {path}")
    return 1 if len(failed) else 0


def pre_encode_clips(clips: list[str]) -> dict[str, dict[int, float]]:
    """{video name: {second: kbits}} of the reference pre-encoding of each clip's frames, as
    the runs of `casva profile` read them (same source, size and capture times)."""
    from device.offload import pre_encoded_seconds
    from stac.data import data_root
    from stac.frames import open_source
    from stac.options import parse_size

    out = {}
    for name in clips:
        if name not in CLIPS:
            raise ValueError(f"unknown clip {name!r}; known: {', '.join(CLIPS)}")
        video, size = CLIPS[name]
        source = open_source(video.format(data=data_root()), size=parse_size(size))
        out[name] = pre_encoded_seconds((f.t, f.rgb) for f in source)
    return out


def cmd_pre_encode(args: argparse.Namespace) -> int:
    from edge.casva_env import write_pre_encoding

    try:
        seconds = pre_encode_clips(args.clips.split(","))
    except (OSError, ValueError) as e:
        print(f"stac-sim casva pre-encode: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{sum(map(len, seconds.values()))} seconds -> {write_pre_encoding(seconds, args.out)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from edge.casva_env import PRE_ENCODING, read_tables
    from edge.casva_policy import train
    from stac.data import data_root

    torch.set_num_threads(1)
    root = args.traces or data_root() / "traces"
    try:
        pre = args.pre_encoding or PRE_ENCODING
        tables = read_tables(args.tables, None if str(pre) == "none" else pre)
        policy, result = train(tables, root, updates=args.updates, envs=args.envs,
                               seed=args.seed, curve=args.out.with_suffix(".curve.csv"))
    except (OSError, ValueError) as e:
        print(f"stac-sim casva train: {e}", file=sys.stderr)
        return 2
    policy.card.update(tables=str(args.tables), pre_encoding=str(pre), command=shlex.join([
        "stac-sim", "casva", "train", str(args.tables), "--pre-encoding", str(pre),
        "--out", str(args.out),
        "--updates", str(args.updates), "--envs", str(args.envs), "--seed", str(args.seed)]))
    policy.save(args.out)
    print(json.dumps(result, indent=2))
    return 0
