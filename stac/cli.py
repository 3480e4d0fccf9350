"""`stac-sim`: one entry point whose subcommands live in `stac.commands`, one module each."""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import warnings

from stac import __version__
from stac.notices import CompileNotice, InputWarning

# Each module defines `register(subparsers)`, adding its parser with `set_defaults(func=...)`;
# `func(args)` returns the process exit code.
COMMAND_MODULES = (
    "stac.commands.run",
    "stac.commands.traces",
    "stac.commands.models",
    "stac.commands.emulate",
    "stac.commands.tables",
    "stac.commands.data",
)


def _shows_default(action: argparse.Action) -> bool:
    """Whether `action`'s help should state its default: an option with a real default
    (not None, False or NaN, i.e. 'not set') whose help does not already say it."""
    default = action.default
    empty = default is None or default is False or default == {} or default is argparse.SUPPRESS \
        or (isinstance(default, float) and math.isnan(default))
    return (bool(action.option_strings) and action.nargs != 0 and not empty
            and "default" not in (action.help or ""))


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Make the help of `parser` and of every subcommand below it state each default."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)
        elif _shows_default(action):
            action.help = f"{action.help} (default: %(default)s)" if action.help \
                else "default: %(default)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stac-sim",
        description="Simulate and emulate edge-assisted video streaming for semantic segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _show_defaults(parser)
    return parser


def _one_line_warnings(prog: str):
    """A `warnings.showwarning` that prints the project's warnings as `prog: warning: ...`."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CompileNotice):
            print(f"{prog}: {message}", file=sys.stderr, flush=True)
        elif issubclass(category, InputWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warnings("stac-sim")
    try:
        return int(args.func(args) or 0)
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
