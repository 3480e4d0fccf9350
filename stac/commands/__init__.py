"""Subcommands of `stac-sim`, one module each (see `stac.cli.COMMAND_MODULES`)."""
