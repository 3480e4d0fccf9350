"""The notebooks in notebooks/: committed without outputs, and executed end to end (nbclient)
on a tiny configuration, as CI runs them."""

import os

import nbformat
import pytest

NOTEBOOKS = ("accuracy_bitrate.ipynb", "run_explorer.ipynb")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_without_outputs(repo_root, name):
    book = nbformat.read(repo_root / "notebooks" / name, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)  # papermill's cell


def execute(repo_root, name, env):
    from nbclient import NotebookClient

    book = nbformat.read(repo_root / "notebooks" / name, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(repo_root / "notebooks")}}).execute(env=env)
    return book


def outputs(book, kind):
    return [o for c in book.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == kind or kind in o.get("data", {})]


@pytest.mark.slow
def test_notebooks_execute_on_a_tiny_sweep(repo_root, tmp_path):
    pytest.importorskip("ipykernel")
    env = {**os.environ, "STAC_NB_TINY": "1", "STAC_NB_OUT": str(tmp_path / "sweep"),
           "STAC_CACHE": str(tmp_path / "cache"), "STAC_NB_WORKERS": "2",
           "PYTHONPATH": os.pathsep.join([str(repo_root), os.environ.get("PYTHONPATH", "")])}
    book = execute(repo_root, "accuracy_bitrate.ipynb", env)
    assert not outputs(book, "error")
    assert len(outputs(book, "image/png")) >= 1  # the accuracy-bitrate curves
    html = " ".join(o["data"]["text/html"] for o in outputs(book, "text/html"))
    assert "h264" in html and "jpeg" in html and "bd_rate" in html
    runs = sorted(p for p in (tmp_path / "sweep" / "runs").iterdir() if p.is_dir())
    assert len(runs) == 4
    env["STAC_NB_RUN"] = str(runs[0])
    book = execute(repo_root, "run_explorer.ipynb", env)
    assert not outputs(book, "error")
    assert len(outputs(book, "image/png")) == 3  # timeline, distributions, bitrate/bandwidth
