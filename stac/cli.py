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
# `func(args)` returns the process exit code. Only the chosen command's module is imported
# (a module may import torch and the models): the others are listed by name and help alone,
# which tests/test_run_cli.py checks against each module's own parser.
COMMANDS = {
    "run": ("stac.commands.run", "simulate a scheme on a video over a bandwidth trace"),
    "traces": ("stac.commands.traces", "import, summarise and synthesise bandwidth traces"),
    "models": ("stac.commands.models", "list, train and evaluate edge models"),
    "emulate": ("stac.commands.emulate",
                "run an edge and N devices as processes over loopback TCP"),
    "tables": ("stac.commands.tables", "STAC's gradient-derived quantisation tables"),
    "data": ("stac.commands.data",
             "list and fetch the datasets (CamVid, the dash-cam clip, real traces)"),
    "sweep": ("stac.commands.sweep",
              "run a grid of simulations from a TOML spec (process pool or Ray)"),
    "tuner": ("stac.commands.tuner", "the B/fps tuner network (STAC §VI)"),
    "profile": ("stac.commands.profile",
                "per-second profiles of a scheme over a grid of its knob and fps "
                "(STAC §VI offline stage)"),
}
COMMAND_MODULES = tuple(module for module, _ in COMMANDS.values())


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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command's full parser, or (`command` given) with only that
    command's full parser and the others by name and help (nothing else imported)."""
    parser = argparse.ArgumentParser(
        prog="stac-sim",
        description="Simulate and emulate edge-assisted video streaming for semantic segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_text)
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


def _command(argv: list[str]) -> str:
    """The command named in `argv` ("" when none: the top-level parser answers)."""
    return next((a for a in argv if not a.startswith("-")), "")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse `argv`; a command with scheme options (`stac.options`) gets the chosen scheme,
    built from the options left over, as `args.scheme_params`."""
    from stac.options import parse_scheme
    from stac.schemes import SchemeError

    args, rest = parser.parse_known_args(argv)
    if getattr(args, "scheme_options", False):
        try:
            args.scheme_params = parse_scheme(args.scheme, rest)
        except SchemeError as e:
            parser.exit(2, f"{parser.prog} {getattr(args, 'command', '')}: {e}\n")
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(build_parser(_command(argv)), argv)
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warnings("stac-sim")
    try:
        return int(args.func(args) or 0)
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
