"""Every registered scheme passes the conformance check (`stac.schemes.conformance`), and a
scheme from another distribution registers through the ``stac_sim.schemes`` entry point and
runs in both drivers without touching the project."""

import sys

import pandas as pd
import pytest

import stac.schemes as schemes
from stac.schemes import list_schemes
from stac.schemes.conformance import check_parameters, check_scheme

PLUGIN = '''\\
"""A test-only scheme from outside the project: JPEG offloading at quality 20."""

from dataclasses import dataclass
from typing import ClassVar

from stac.schemes import param
from stac.schemes.offload import Jpeg


@dataclass(frozen=True)
class Grainy(Jpeg):
    """JPEG offloading at a low default quality (a third-party scheme for the tests)."""

    name: ClassVar[str] = "grainy"
    quality: int = param(20, "JPEG quality", low=1, high=95, knob=True)
'''


def _install(tmp_path, monkeypatch, dist: str, entry_point: str) -> None:
    """An installed distribution `dist` (a dist-info with entry_points.txt on sys.path)
    declaring `entry_point` in group stac_sim.schemes; the registry reads it afresh."""
    info = tmp_path / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[stac_sim.schemes]\n{entry_point}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(schemes, "_entry_points_loaded", False)
    monkeypatch.setattr(schemes, "_SCHEMES", dict(schemes._SCHEMES))


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """A distribution declaring `grainy`, a scheme module outside the project."""
    (tmp_path / "grainy_scheme.py").write_text(PLUGIN)
    _install(tmp_path, monkeypatch, "grainy_scheme", "grainy = grainy_scheme:Grainy")
    yield "grainy"
    sys.modules.pop("grainy_scheme", None)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STAC_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", list_schemes())
def test_parameters_conform(name):
    check_parameters(schemes.get_scheme(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", list_schemes())
def test_every_registered_scheme_conforms(name, tmp_path, repo_root, one_thread):
    check_scheme(name, tmp_path, repo_root / "traces" / "lte.csv")


@pytest.mark.slow
def test_a_scheme_registered_by_entry_point_runs_in_both_drivers(plugin, tmp_path, repo_root,
                                                                 one_thread):
    assert plugin in list_schemes()
    check_scheme(plugin, tmp_path, repo_root / "traces" / "lte.csv")
    frames = pd.read_csv(tmp_path / "grainy-emu" / "frames.csv")
    assert "quality" in frames.columns and (frames["quality"] == 20).all()


def test_a_broken_entry_point_is_a_clear_error(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "broken", "broken = no_such_module:X")
    assert "broken" in list_schemes()
    with pytest.raises(schemes.SchemeError, match="scheme 'broken': cannot load"):
        schemes.get_scheme("broken")
