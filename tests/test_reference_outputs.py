"""Refactors keep outputs byte-identical: re-run the reference runs saved from main before
the scheme-contract and speed refactors (`tests/reference/runs.py`) and compare the CSVs."""

import pytest
from reference.runs import OUTPUTS, RUNS, run_reference


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_outputs_match_the_saved_reference(name, tmp_path, one_thread):
    out = run_reference(name, tmp_path / "out", tmp_path)
    for csv in ("frames.csv", "seconds.csv"):
        assert (out / csv).read_text() == (OUTPUTS / name / csv).read_text(), f"{name}/{csv}"
