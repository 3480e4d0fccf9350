"""`stac-sim`: one entry point whose subcommands live in `stac.commands`, one module each."""

from __future__ import annotations

import argparse
import importlib
import sys

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
}
COMMAND_MODULES = tuple(module for module, _ in COMMANDS.values())


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command's full parser, or (`command` given) with only that
    command's full parser and the others by name and help (nothing else imported)."""
    parser = argparse.ArgumentParser(
        prog="stac-sim",
        description="Simulate and emulate edge-assisted video streaming for semantic segmentation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
