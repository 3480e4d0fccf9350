"""Shared fixtures: the datasets of the data root (`stac.data`: $STAC_DATA, else ../shared/data).

A test that reads a dataset asks for it by name (`dataset("camvid")`); when the dataset is
not in the data root the test is skipped with the dataset's name and the fetch command, and
under `CI=true` it fails instead, so CI runs every test.
"""

import os
from pathlib import Path

import pytest
import torch

from stac.data import DatasetMissing, data_root, dataset_dir

REPO = Path(__file__).resolve().parent.parent
DATA_FIXTURES = {"dataset", "shared_data"}


def _missing(exc: Exception):
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{exc} (CI=true: data tests must run)", pytrace=False)
    pytest.skip(str(exc))


@pytest.fixture(scope="session")
def dataset():
    """`dataset(name)`: the folder of a dataset of the manifest; skips (CI: fails) if absent."""

    def get(name: str) -> Path:
        try:
            return dataset_dir(name)
        except DatasetMissing as exc:
            _missing(exc)

    return get


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The data root itself, for tests that read several datasets; skips (CI: fails) if absent."""
    root = data_root()
    if not root.is_dir():
        _missing(DatasetMissing(f"no data root at {root}; get the datasets with "
                                "`stac-sim data fetch all --from URL_OR_DIR`"))
    return root


def pytest_collection_modifyitems(items):
    """Mark every test that reads a dataset `data` (`pytest -m "not data"` leaves them out)."""
    for item in items:
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture()
def one_thread():
    """One torch intra-op thread for the test (tiny tensors: two OpenMP threads on a busy
    2-core host are far slower), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def untrained_drn():
    """A small untrained DRN-D-22 (width 0.25, seed 0), for mechanics only (timing, bytes,
    messages; never accuracy); one torch thread while the module uses it."""
    from edge.models.registry import build_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield build_model("drn_d_22", width=0.25).eval()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, untrained_drn) -> Path:
    """`untrained_drn` saved as a checkpoint file, for `--model PATH` runs (mechanics only)."""
    from edge.models.registry import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny_drn.pt"
    save_checkpoint(untrained_drn, "drn_d_22", {"width": 0.25}, path,
                    card={"note": "untrained, tests only"})
    return path
