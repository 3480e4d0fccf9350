"""`stac-sim data list|fetch|path|manifest`: the datasets outside the repository (stac.data)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stac.data import (
    MANIFEST,
    DataError,
    build_manifest,
    data_root,
    data_root_origin,
    dataset_dir,
    fetch,
    human_bytes,
    load_manifest,
    status,
    verify,
    write_manifest,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data", help="list and fetch the datasets (CamVid, the dash-cam clip, real traces)",
        description="Datasets live in the data root: $STAC_DATA, else ../shared/data beside "
                    "the checkout, else a per-user folder.")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    ls = sub.add_parser("list", help="each dataset: present or not, files, size, provenance")
    ls.add_argument("--verify", action="store_true",
                    help="also check every file's sha256 (reads all the data)")
    _common(ls)
    ls.set_defaults(func=_list)

    fe = sub.add_parser("fetch", help="copy or download a dataset into the data root, verified")
    fe.add_argument("name", help="dataset name (see `stac-sim data list`) or 'all'")
    fe.add_argument("--from", dest="source", required=True, metavar="URL_OR_DIR",
                    help="a folder holding the dataset (a data root or the dataset folder "
                         "itself) or an http(s) base URL laid out like a data root")
    _common(fe)
    fe.set_defaults(func=_fetch)

    pa = sub.add_parser("path", help="print a dataset's folder (for scripts: "
                                     "--data \"$(stac-sim data path camvid)\")")
    pa.add_argument("name", help="dataset name (see `stac-sim data list`)")
    _common(pa)
    pa.set_defaults(func=_path)

    ma = sub.add_parser("manifest", help="(maintainers) regenerate the manifest's file lists "
                                         "and checksums from a copy of the data")
    ma.add_argument("--from", dest="source", required=True, type=Path, metavar="DIR",
                    help="a data root holding every dataset")
    ma.add_argument("--out", type=Path, default=None,
                    help="manifest to write (default: the --manifest file)")
    _common(ma)
    ma.set_defaults(func=_manifest)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=None,
                   help="data root (default: $STAC_DATA, else ../shared/data, else per-user)")
    p.add_argument("--manifest", type=Path, default=MANIFEST, help="dataset manifest (JSON)")


def _list(args: argparse.Namespace) -> int:
    try:
        datasets = load_manifest(args.manifest)
    except DataError as exc:
        print(f"stac-sim data: {exc}", file=sys.stderr)
        return 2
    root = args.root or data_root()
    origin = "--root" if args.root else data_root_origin()
    print(f"data root: {root} ({origin})")
    rows = [("name", "status", "files", "size", "licence", "provenance")]
    bad = 0
    for ds in datasets.values():
        state = status(ds, root)
        if args.verify and state == "present" and verify(ds, root):
            state = "corrupt"
        bad += state != "present"
        rows.append((ds.name, state, str(len(ds.files)), human_bytes(ds.bytes), ds.licence,
                     ds.provenance))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5])
    if bad:
        print("fetch a dataset with `stac-sim data fetch NAME --from URL_OR_DIR`")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    try:
        datasets = load_manifest(args.manifest)
        names = list(datasets) if args.name == "all" else [args.name]
        for name in names:
            if name not in datasets:
                raise DataError(f"unknown dataset {name!r}; known: {', '.join(datasets)}")
        root = args.root or data_root()
        for name in names:
            ds = datasets[name]
            bar = tqdm(ds.files, desc=name, unit="file", dynamic_ncols=True, file=sys.stderr)
            folder = fetch(ds, args.source, root, progress=bar)
            bar.close()
            print(f"{name}: {len(ds.files)} files, {human_bytes(ds.bytes)}, every sha256 "
                  f"verified, in {folder}")
    except (DataError, OSError) as exc:
        print(f"stac-sim data fetch: {exc}", file=sys.stderr)
        return 2
    return 0


def _path(args: argparse.Namespace) -> int:
    try:
        print(dataset_dir(args.name, args.root, args.manifest))
    except DataError as exc:
        print(f"stac-sim data path: {exc}", file=sys.stderr)
        return 2
    return 0


def _manifest(args: argparse.Namespace) -> int:
    try:
        doc = build_manifest(args.source, args.manifest)
        path = write_manifest(doc, args.out or args.manifest)
    except (DataError, OSError, ValueError) as exc:
        print(f"stac-sim data manifest: {exc}", file=sys.stderr)
        return 2
    n = sum(len(d["files"]) for d in doc["datasets"].values())
    print(f"{path}: {len(doc['datasets'])} datasets, {n} files")
    return 0
