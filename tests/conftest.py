"""Shared fixtures: the read-only data beside the checkout (`../shared/data`)."""

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: tests read the real data in ../shared/data")
    return SHARED_DATA


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
