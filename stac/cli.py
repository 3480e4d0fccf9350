"""`stac-sim`: one entry point whose subcommands live in `stac.commands`, one module each."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines `register(subparsers)`, adding its parser with `set_defaults(func=...)`;
# `func(args)` returns the process exit code.
COMMAND_MODULES = (
    "stac.commands.run",
    "stac.commands.traces",
    "stac.commands.models",
    "stac.commands.emulate",
    "stac.commands.tables",
    "stac.commands.tuner",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stac-sim",
        description="Simulate and emulate edge-assisted video streaming for semantic segmentation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


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
    args = parse(build_parser(), argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
