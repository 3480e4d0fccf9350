"""The shared secret of an edge and its devices, read from a file or the environment.

A token on a command line is readable by every local user (`ps`), so `stac-sim emulate`
hands it to its processes through $STAC_TOKEN; users can keep it in a file.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "STAC_TOKEN"


def read_token(token_file: Path | None = None, token: str | None = None,
               environ: dict[str, str] | None = None) -> str:
    """The shared secret: `--token-file` (first line), else `--token`, else $STAC_TOKEN,
    else empty (authentication off). A file or the environment keeps it off command lines,
    where any local user can read it."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        text = token_file.read_text().splitlines()
        return text[0].strip() if text else ""
    if token:
        return token
    return environ.get(ENV, "")
