"""Datasets outside the repository (CamVid, a dash-cam clip, real traces) and where they live.

The data root is ``$STAC_DATA`` when set, else ``../shared/data`` beside the checkout when
that folder exists, else a per-user folder (``$XDG_DATA_HOME/stac-sim/data``). The manifest
(``stac/datasets.json``) lists each dataset's folder under the root, provenance, licence and
every file's size and sha256; ``stac-sim data fetch`` copies or downloads a dataset into the
root and verifies every checksum before anything becomes visible there (DESIGN.md "Data").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

ENV = "STAC_DATA"
MANIFEST = Path(__file__).resolve().parent / "datasets.json"
REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
CHUNK = 1 << 20


class DataError(Exception):
    """A dataset is missing, incomplete or corrupt, or a manifest is invalid; names the file."""


class DatasetMissing(DataError):
    """A dataset is not in the data root; the message names the fetch command."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset: its path inside the dataset folder, size and sha256."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Dataset:
    """A dataset of the manifest: folder under the data root, provenance, licence, files."""

    name: str
    path: str  # folder under the data root, e.g. "traces/fcc"
    description: str
    provenance: str
    licence: str
    files: tuple[FileEntry, ...]

    @property
    def bytes(self) -> int:
        """Total size of the dataset's files."""
        return sum(f.bytes for f in self.files)

    def folder(self, root: str | Path | None = None) -> Path:
        """The dataset's folder under `root` (default: the data root)."""
        return (data_root() if root is None else Path(root)) / self.path


def data_root() -> Path:
    """``$STAC_DATA``, else ``../shared/data`` when present, else the per-user data folder."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "stac-sim" / "data"


def data_root_origin() -> str:
    """Where `data_root` came from, for messages: the variable, the checkout, or the default."""
    if os.environ.get(ENV):
        return f"${ENV}"
    if SHARED_DATA.is_dir():
        return "../shared/data beside the checkout"
    return f"default (set ${ENV} to change)"


def load_manifest(path: str | Path = MANIFEST) -> dict[str, Dataset]:
    """The datasets of a manifest file, by name."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the dataset manifest ({exc})") from None
    try:
        return {name: _dataset(name, d) for name, d in doc["datasets"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: invalid dataset manifest ({exc!r})") from None


def _dataset(name: str, d: dict[str, Any]) -> Dataset:
    files = tuple(FileEntry(str(p), int(f["bytes"]), str(f["sha256"]))
                  for p, f in sorted(d["files"].items()))
    for f in files:  # a manifest must not point outside its dataset folder
        if Path(f.path).is_absolute() or ".." in Path(f.path).parts:
            raise ValueError(f"file path {f.path!r} leaves the dataset folder")
    return Dataset(name=name, path=str(d["path"]), description=str(d["description"]),
                   provenance=str(d["provenance"]), licence=str(d["licence"]), files=files)


def get_dataset(name: str, manifest: str | Path = MANIFEST) -> Dataset:
    """One dataset of the manifest by name; the error lists the known names."""
    datasets = load_manifest(manifest)
    if name not in datasets:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(datasets)}")
    return datasets[name]


def fetch_command(name: str) -> str:
    """The command that puts dataset `name` into the data root."""
    return f"stac-sim data fetch {name} --from URL_OR_DIR"


def status(dataset: Dataset, root: str | Path | None = None) -> str:
    """'present' (every file there with its size), 'missing' (no folder) or 'incomplete'."""
    folder = dataset.folder(root)
    if not folder.is_dir():
        return "missing"
    for f in dataset.files:
        p = folder / f.path
        if not p.is_file() or p.stat().st_size != f.bytes:
            return "incomplete"
    return "present"


def dataset_dir(name: str, root: str | Path | None = None,
                manifest: str | Path = MANIFEST) -> Path:
    """The folder of dataset `name` when all its files are present; else `DatasetMissing`."""
    ds = get_dataset(name, manifest)
    root = data_root() if root is None else Path(root)
    state = status(ds, root)
    if state != "present":
        raise DatasetMissing(
            f"dataset {name!r} is {state} in the data root {root} "
            f"({data_root_origin()}); get it with `{fetch_command(name)}`")
    return ds.folder(root)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(dataset: Dataset, root: str | Path | None = None) -> list[str]:
    """Problems of the dataset's copy under `root`: missing files, wrong sizes or checksums."""
    folder = dataset.folder(root)
    problems = []
    for f in dataset.files:
        p = folder / f.path
        if not p.is_file():
            problems.append(f"{p}: missing")
        elif p.stat().st_size != f.bytes:
            problems.append(f"{p}: {p.stat().st_size} bytes, the manifest says {f.bytes}")
        elif (got := sha256_file(p)) != f.sha256:
            problems.append(f"{p}: sha256 {got} does not match the manifest's {f.sha256}")
    return problems


# ----------------------------------------------------------------------------- fetching


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https")


def _open_source(source: str, dataset: Dataset, entry: FileEntry) -> tuple[str, BinaryIO]:
    """(where, readable stream) of one file of `dataset` at `source` (a URL base or a folder).

    A folder is either a data root (holding ``dataset.path``) or the dataset folder itself.
    """
    if _is_url(source):
        url = "/".join([source.rstrip("/"), urllib.parse.quote(dataset.path),
                        urllib.parse.quote(entry.path)])
        try:
            return url, urllib.request.urlopen(url, timeout=60)  # noqa: S310 (http(s) only)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DataError(f"{url}: cannot download ({getattr(exc, 'reason', exc)})") from None
    base = Path(source).expanduser()
    folder = base / dataset.path if (base / dataset.path).is_dir() else base
    path = folder / entry.path
    try:
        return str(path), open(path, "rb")  # noqa: SIM115 (closed by the caller)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _copy_verified(where: str, stream: BinaryIO, entry: FileEntry, dest: Path) -> None:
    """Copy `stream` to `dest`, checking size and sha256 against `entry` (DataError if not)."""
    h = hashlib.sha256()
    n = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with stream, open(dest, "wb") as out:
        while chunk := stream.read(CHUNK):
            n += len(chunk)
            if n > entry.bytes:
                break
            h.update(chunk)
            out.write(chunk)
    if n != entry.bytes:
        size = f"more than {entry.bytes}" if n > entry.bytes else str(n)
        raise DataError(f"{where}: {size} bytes, the manifest says {entry.bytes}")
    if (got := h.hexdigest()) != entry.sha256:
        raise DataError(f"{where}: sha256 {got} does not match the manifest's {entry.sha256}")


def fetch(dataset: Dataset, source: str | Path, root: str | Path | None = None,
          progress: Iterable[FileEntry] | None = None) -> Path:
    """Copy (from a folder) or download (from an http(s) base URL) `dataset` into the data root.

    Every file is verified (size and sha256) in a temporary folder beside the target; only a
    complete, verified copy replaces the dataset's folder, so a failed fetch changes nothing.
    `progress` may wrap the file list (e.g. a tqdm). Returns the dataset's folder.
    """
    root = data_root() if root is None else Path(root)
    target = dataset.folder(root)
    source = str(source)
    if not _is_url(source) and not Path(source).expanduser().is_dir():
        raise DataError(f"{source}: no such folder (and not an http(s) URL)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".fetching", dir=target.parent))
    try:
        for entry in (dataset.files if progress is None else progress):
            where, stream = _open_source(source, dataset, entry)
            _copy_verified(where, stream, entry, tmp / entry.path)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            shutil.rmtree(old)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


# ----------------------------------------------------------------------------- the manifest


def scan(folder: str | Path) -> Iterator[FileEntry]:
    """Every regular file under `folder` (sorted, hidden files skipped) with size and sha256."""
    folder = Path(folder)
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            yield FileEntry(rel.as_posix(), p.stat().st_size, sha256_file(p))


def build_manifest(root: str | Path, template: str | Path = MANIFEST) -> dict[str, Any]:
    """The manifest document of `template`'s datasets with their files scanned from `root`.

    Descriptions, provenance and licences come from the template (written by hand); sizes
    and checksums from the files. A dataset whose folder is missing under `root` is an error.
    """
    doc = json.loads(Path(template).read_text())
    for name, d in doc["datasets"].items():
        folder = Path(root) / d["path"]
        if not folder.is_dir():
            raise DataError(f"{folder}: no folder for dataset {name!r}")
        d["files"] = {f.path: {"bytes": f.bytes, "sha256": f.sha256} for f in scan(folder)}
    return doc


def write_manifest(doc: dict[str, Any], path: str | Path) -> Path:
    """Write a manifest document (stable order, one file per line) atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def human_bytes(n: int) -> str:
    """A size with a binary unit, e.g. '122.0 MiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
