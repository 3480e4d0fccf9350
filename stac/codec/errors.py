"""Errors raised by the codec."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class BitstreamError(ValueError):
    """A codec bitstream is corrupt, truncated, of an unknown version or exceeds the limits."""


@contextmanager
def decoding(what: str) -> Iterator[None]:
    """Any failure while decoding a peer's bytes is that peer's corrupt bitstream: it leaves
    this block as a `BitstreamError` naming `what` (decompression bombs, library errors)."""
    try:
        yield
    except BitstreamError:
        raise
    except Exception as exc:  # the bytes came from outside: none of this is our bug
        raise BitstreamError(f"{what}: {type(exc).__name__}: {exc}") from exc


def check_size(what: str, got: tuple[int, int], expected: tuple[int, int] | None) -> None:
    """Refuse a frame whose (width, height) is not the session's (before it is decoded)."""
    if expected is not None and tuple(got) != tuple(expected):
        raise BitstreamError(f"{what} is {got[0]}x{got[1]}, the session's frames are "
                             f"{expected[0]}x{expected[1]}")
