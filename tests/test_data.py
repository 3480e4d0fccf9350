"""The data root, the dataset manifest, `stac-sim data list|fetch|manifest` (stac.data)."""

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from stac import data
from stac.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def tiny(tmp_path, repo_root):
    """A tiny 'fcc' dataset laid out as a data root (copies of the repository's own traces,
    so no data root is needed) and its manifest, built by the manifest generator from the
    shipped entry for fcc."""
    shipped = json.loads(data.MANIFEST.read_text())
    src = tmp_path / "src"
    fcc = src / "traces" / "fcc"
    fcc.mkdir(parents=True)
    for i, name in enumerate(("lte.csv", "fcc.csv", "wifi.csv")):
        shutil.copy(repo_root / "traces" / name, fcc / f"t{i}.csv")
    (fcc / "sub").mkdir()
    (fcc / "sub" / "README").write_text("a nested file\n")
    template = tmp_path / "template.json"
    template.write_text(json.dumps({"datasets": {"fcc": {**shipped["datasets"]["fcc"],
                                                         "files": {}}}}))
    manifest = tmp_path / "manifest.json"
    data.write_manifest(data.build_manifest(src, template), manifest)
    return src, manifest


def test_manifest_lists_every_file_with_size_and_sha256(tiny):
    src, manifest = tiny
    ds = data.get_dataset("fcc", manifest)
    assert [f.path for f in ds.files] == ["sub/README", "t0.csv", "t1.csv", "t2.csv"]
    t0 = src / "traces" / "fcc" / "t0.csv"
    entry = ds.files[1]
    assert entry.bytes == t0.stat().st_size
    assert entry.sha256 == data.sha256_file(t0)
    assert ds.licence == "public domain data"


def test_fetch_from_a_folder_verifies_and_lists_present(tiny, tmp_path, capsys):
    src, manifest = tiny
    root = tmp_path / "root"
    assert main(["data", "list", "--root", str(root), "--manifest", str(manifest)]) == 0
    assert "missing" in capsys.readouterr().out
    with pytest.raises(data.DatasetMissing, match="stac-sim data fetch fcc"):
        data.dataset_dir("fcc", root, manifest)
    assert main(["data", "path", "fcc", "--root", str(root), "--manifest", str(manifest)]) == 2
    assert "dataset 'fcc' is missing" in capsys.readouterr().err
    assert main(["data", "fetch", "fcc", "--from", str(src), "--root", str(root),
                 "--manifest", str(manifest)]) == 0
    assert "every sha256 verified" in capsys.readouterr().out
    folder = data.dataset_dir("fcc", root, manifest)
    assert folder == root / "traces" / "fcc"
    assert (folder / "sub" / "README").read_text() == "a nested file\n"
    assert (folder / "t1.csv").read_bytes() == (src / "traces" / "fcc" / "t1.csv").read_bytes()
    assert main(["data", "list", "--verify", "--root", str(root), "--manifest",
                 str(manifest)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("fcc")][0]
    size = data.human_bytes(data.get_dataset("fcc", manifest).bytes)
    assert line.split()[1:5] == ["present", "4", *size.split()]
    assert main(["data", "path", "fcc", "--root", str(root), "--manifest", str(manifest)]) == 0
    assert capsys.readouterr().out.strip() == str(folder)
    # the dataset folder itself is accepted as --from, too
    assert main(["data", "fetch", "fcc", "--from", str(src / "traces" / "fcc"), "--root",
                 str(root), "--manifest", str(manifest)]) == 0


def test_fetch_fails_on_a_checksum_mismatch_and_writes_nothing(tiny, tmp_path, capsys):
    src, manifest = tiny
    bad = src / "traces" / "fcc" / "t1.csv"
    text = bad.read_bytes()
    bad.write_bytes(text[:-2] + (b"9" if text[-2:-1] != b"9" else b"8") + text[-1:])
    root = tmp_path / "root"
    assert main(["data", "fetch", "fcc", "--from", str(src), "--root", str(root),
                 "--manifest", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "t1.csv: sha256" in err and "does not match the manifest" in err
    assert not (root / "traces" / "fcc").exists()
    assert list((root / "traces").iterdir()) == []  # no temporary folder left behind
    bad.unlink()
    assert main(["data", "fetch", "fcc", "--from", str(src), "--root", str(root),
                 "--manifest", str(manifest)]) == 2
    assert "t1.csv: cannot read" in capsys.readouterr().err


def test_fetch_replaces_a_corrupt_copy(tiny, tmp_path):
    src, manifest = tiny
    root = tmp_path / "root"
    ds = data.get_dataset("fcc", manifest)
    data.fetch(ds, src, root)
    (root / "traces" / "fcc" / "t0.csv").write_text("0,1\n")
    assert data.status(ds, root) == "incomplete"
    assert data.verify(ds, root)
    data.fetch(ds, src, root)
    assert data.verify(ds, root) == []


def test_fetch_downloads_from_an_http_base_url(tiny, tmp_path):
    src, manifest = tiny
    handler = functools.partial(_QuietHandler, directory=str(src))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        root = tmp_path / "root"
        assert main(["data", "fetch", "fcc", "--from", url, "--root", str(root),
                     "--manifest", str(manifest)]) == 0
        assert data.verify(data.get_dataset("fcc", manifest), root) == []
        with pytest.raises(data.DataError, match="cannot download"):
            data.fetch(data.get_dataset("fcc", manifest), url + "nowhere/", tmp_path / "r2")
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_unknown_dataset_lists_the_known_ones(capsys):
    assert main(["data", "fetch", "nosuch", "--from", "."]) == 2
    assert "known: camvid, videos, lte-mahimahi, fcc, 3g-norway, wifi" in capsys.readouterr().err


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("STAC_DATA", str(tmp_path / "d"))
    assert data.data_root() == tmp_path / "d"
    monkeypatch.delenv("STAC_DATA")
    monkeypatch.setattr(data, "SHARED_DATA", tmp_path / "absent")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data.data_root() == tmp_path / "xdg" / "stac-sim" / "data"


def test_shipped_manifest_matches_the_data(dataset):
    """Every dataset of the shipped manifest, checked file by file against the data root."""
    for ds in data.load_manifest().values():
        dataset(ds.name)
        assert data.verify(ds) == [], ds.name


def test_missing_data_skips_with_the_fetch_command_and_fails_under_ci(tmp_path):
    """A data test on a machine without the data: skipped naming dataset and command; CI fails."""
    import os
    import subprocess
    import sys

    test = tmp_path / "test_needs_data.py"
    test.write_text("def test_camvid(dataset):\n    assert dataset('camvid').is_dir()\n")
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    env = {**os.environ, "STAC_DATA": str(tmp_path / "nonexistent"), "PYTHONPATH": str(REPO)}
    env.pop("CI", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test)]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 skipped" in res.stdout
    assert "dataset 'camvid' is missing" in res.stdout
    assert "stac-sim data fetch camvid" in res.stdout
    res = subprocess.run(cmd, cwd=tmp_path, env={**env, "CI": "true"}, capture_output=True,
                         text=True)
    assert res.returncode == 1
    assert "CI=true: data tests must run" in res.stdout
