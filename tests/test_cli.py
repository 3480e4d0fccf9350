"""`stac-sim` loads only the chosen command's module (issue 15: --help without torch)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from stac.cli import COMMANDS, build_parser


def test_listed_help_is_each_commands_own():
    """The names and help the top-level parser lists without importing a command module
    are the ones that module registers."""
    for name, (module, help_text) in COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        registered = {a.dest: a.help for a in sub._choices_actions}
        assert registered == {name: help_text}
    full = build_parser()
    assert {a.dest for a in full._subparsers._group_actions[0]._choices_actions} == set(COMMANDS)


@pytest.mark.parametrize("argv", [["--help"], ["traces", "stats", "traces/lte.csv"]])
def test_help_and_traces_do_not_import_torch(argv, repo_root):
    code = ("import sys\nfrom stac.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch loaded'\n"
            "assert 'numba' not in sys.modules, 'numba loaded'\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=repo_root,
                          env={"PYTHONPATH": str(repo_root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "COMMAND" in done.stdout or "mean" in done.stdout
