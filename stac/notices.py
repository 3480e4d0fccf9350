"""Warnings of STAC-sim: inputs that run but are not what they claim, and one-time costs.

Library code warns with the standard `warnings` module (callers may filter or record them);
`stac-sim` prints them as one line each, ``stac-sim: warning: ...`` (see `stac.cli`).
"""

from __future__ import annotations


class InputWarning(UserWarning):
    """An input runs but not as asked: a truncated video, a trace that delivers nothing,
    a duration longer than the clip. The message names the file and what was used."""


class CompileNotice(UserWarning):
    """A one-time cost is about to be paid (numba compiling the codec), and then cached."""
