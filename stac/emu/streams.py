"""Protocol frames over asyncio streams: the I/O side of `stac.protocol` (which stays pure).

`read_frame` reads one header and body with deadlines; a `check` callback (the session's
`check_header`) sees the header before the body is read, so a peer cannot make this side
read (or buffer) a body the session would refuse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from stac.protocol import (
    HEADER,
    MAX_BODY,
    ErrorCode,
    Message,
    MessageType,
    ProtocolError,
    decode_body,
    encode,
    parse_header,
)

#: (message type, body length) -> None, or raises ProtocolError before the body is read
HeaderCheck = Callable[[MessageType, int], None]


async def read_frame(reader: asyncio.StreamReader, timeout: float | None = None,
                     idle_timeout: float | None = None, max_body: int = MAX_BODY,
                     check: HeaderCheck | None = None) -> tuple[MessageType, bytes] | None:
    """The next (type, body) of a stream; None at a clean end of stream (between messages).

    The first byte must come within `idle_timeout` seconds and the rest of the message
    within `timeout` seconds after it (ProtocolError TIMEOUT: a message that never
    completes); a stream that ends inside a message is TRUNCATED.
    """
    try:
        first = await asyncio.wait_for(reader.read(1), idle_timeout)
    except asyncio.TimeoutError:
        raise ProtocolError(ErrorCode.TIMEOUT, f"no message within {idle_timeout} s") from None
    if not first:
        return None
    try:
        return await asyncio.wait_for(_read_rest(reader, first, max_body, check), timeout)
    except asyncio.TimeoutError:
        raise ProtocolError(ErrorCode.TIMEOUT,
                            f"message not complete within {timeout} s") from None


async def read_message(reader: asyncio.StreamReader, timeout: float | None = None,
                       idle_timeout: float | None = None,
                       max_body: int = MAX_BODY) -> Message | None:
    """The next message of a stream (as `read_frame`, decoded); None at a clean end."""
    frame = await read_frame(reader, timeout, idle_timeout, max_body)
    return None if frame is None else decode_body(*frame)


async def _read_rest(reader: asyncio.StreamReader, first: bytes, max_body: int,
                     check: HeaderCheck | None) -> tuple[MessageType, bytes]:
    try:
        header = first + await reader.readexactly(HEADER.size - 1)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(ErrorCode.TRUNCATED, f"stream ended after {1 + len(exc.partial)} "
                            f"of {HEADER.size} header bytes") from None
    kind, length = parse_header(header, max_body)
    if check is not None:
        check(kind, length)
    try:
        return kind, await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(ErrorCode.TRUNCATED, f"stream ended after {len(exc.partial)} "
                            f"of {length} {kind.name} body bytes") from None


async def write_message(writer: asyncio.StreamWriter, msg: Message) -> int:
    """Encode and send one message; returns the number of bytes written."""
    frame = encode(msg)
    writer.write(frame)
    await writer.drain()
    return len(frame)
