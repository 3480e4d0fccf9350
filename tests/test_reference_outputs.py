"""Refactors keep outputs byte-identical: re-run the reference runs saved from main before
the scheme-contract and speed refactors (`tests/reference/runs.py`) and compare the CSVs.

The one intended change: the scheme-contract refactor named each configuration column after
the scheme's own knob (h264's QP was written under `B`), so the saved headers are read
with that renaming; every value stays byte for byte."""

import pytest
from reference.runs import OUTPUTS, RUNS, run_reference

#: knob columns renamed by the scheme contract (scheme -> {old header: new header})
RENAMED = {"h264": {"B": "qp"}, "jpeg": {"B": "quality"}, "uniform": {"B": "level"},
           "grace": {"B": "level"}}


def _expected(name: str, csv: str) -> str:
    text = (OUTPUTS / name / csv).read_text()
    header, rest = text.split("\n", 1)
    renamed = RENAMED.get(RUNS[name]["scheme"], {})
    header = ",".join(renamed.get(c, c) for c in header.split(","))
    return header + "\n" + rest


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_outputs_match_the_saved_reference(name, tmp_path, one_thread):
    out = run_reference(name, tmp_path / "out", tmp_path)
    for csv in ("frames.csv", "seconds.csv"):
        assert (out / csv).read_text() == _expected(name, csv), f"{name}/{csv}"
