"""Refactors keep outputs byte-identical: re-run the reference runs saved from main before
the scheme-contract and speed refactors (`tests/reference/runs.py`) and compare the CSVs.

Two intended changes: the scheme-contract refactor named each configuration column after
the scheme's own knob (h264's QP was written under `B`), so the saved headers are read
with that renaming; and later work added columns (`ADDED`, e.g. seconds.csv's
`bandwidth_estimate_kbps` of issue 12), which are cut from the new output before the
comparison, so every original column stays byte for byte (no quoting occurs in these
CSVs, so a line splits on commas)."""

import pytest
from reference.runs import OUTPUTS, RUNS, run_reference

#: knob columns renamed by the scheme contract (scheme -> {old header: new header})
RENAMED = {"h264": {"B": "qp"}, "jpeg": {"B": "quality"}, "uniform": {"B": "level"},
           "grace": {"B": "level"}}
#: columns added after the reference was saved (csv -> names)
ADDED = {"seconds.csv": ("bandwidth_estimate_kbps",)}


def _expected(name: str, csv: str) -> str:
    text = (OUTPUTS / name / csv).read_text()
    header, rest = text.split("\n", 1)
    renamed = RENAMED.get(RUNS[name]["scheme"], {})
    header = ",".join(renamed.get(c, c) for c in header.split(","))
    return header + "\n" + rest


def _without_added(text: str, csv: str) -> str:
    """`text` with the columns of `ADDED[csv]` cut from every line."""
    lines = [line.split(",") for line in text.split("\n")]
    drop = {i for i, c in enumerate(lines[0]) if c in ADDED.get(csv, ())}
    assert len(drop) == len(ADDED.get(csv, ())), f"{csv} lacks an added column"
    return "\n".join(",".join(v for i, v in enumerate(line) if i not in drop) if line != [""]
                     else "" for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_outputs_match_the_saved_reference(name, tmp_path, one_thread):
    out = run_reference(name, tmp_path / "out", tmp_path)
    for csv in ("frames.csv", "seconds.csv"):
        got = _without_added((out / csv).read_text(), csv)
        assert got == _expected(name, csv), f"{name}/{csv}"
