"""Errors raised by the codec."""


class BitstreamError(ValueError):
    """A codec bitstream is corrupt, truncated, of an unknown version or exceeds the limits."""
