"""The device/edge session rules as a sans-IO state machine (h11's shape), used by both ends.

A session is one connection seen from one side (`Role`). The device speaks first with a
HELLO carrying the token; the edge answers with its own HELLO (the session is then OPEN)
or an ERROR (CLOSED). While OPEN the device sends keyframes (whole or in parts), content
metrics and reports, the edge sends feedback and configurations; a BYE or an ERROR from
either side closes the session. `send` and `receive` check a message against these rules
and advance the state; a violation raises `SessionError` (UNEXPECTED), a wrong token
`Unauthorized`. Nothing here does I/O: the drivers (`stac.emu`) read and write the bytes.

On the edge, `receive_frame` takes a frame's type and body and checks, in this order, that
the type may come now (`check_header`, before the body is even read), the HELLO's token
(constant time, before its config is parsed), and only then parses the config.
"""

from __future__ import annotations

import enum
import hmac

from stac import protocol
from stac.protocol import ErrorCode, Message, MessageType, ProtocolError


class Role(enum.Enum):
    """Which end of the connection this session object is."""

    DEVICE = "device"
    EDGE = "edge"


class State(enum.Enum):
    """Where a session is: before the handshake, waiting for the edge's answer, open, closed."""

    START = "start"  # nothing said yet: the device's HELLO must come first
    HELLO_SENT = "hello sent"  # the device's HELLO is out; the edge answers HELLO or ERROR
    OPEN = "open"
    CLOSED = "closed"


class SessionError(ProtocolError):
    """A valid message at a point of the session where the rules do not allow it."""

    def __init__(self, text: str) -> None:
        super().__init__(ErrorCode.UNEXPECTED, text)


class Unauthorized(ProtocolError):
    """A HELLO with a missing or wrong token."""

    def __init__(self, text: str = "wrong or missing token") -> None:
        super().__init__(ErrorCode.UNAUTHORIZED, text)


#: what each role may send while the session is open
OPEN_SENDS: dict[Role, frozenset[MessageType]] = {
    Role.DEVICE: frozenset({MessageType.KEYFRAME, MessageType.PART, MessageType.CONTENT,
                            MessageType.REPORT, MessageType.BYE}),
    Role.EDGE: frozenset({MessageType.FEEDBACK, MessageType.CONFIG, MessageType.ERROR,
                          MessageType.BYE}),
}
#: what a PART may carry inside it (a device's paced uplink)
PART_CARRIES = OPEN_SENDS[Role.DEVICE] - {MessageType.PART}


def _type_of(msg: Message) -> MessageType:
    return MessageType[type(msg).__name__.upper()]


class Session:
    """The rules of one connection from one side. `token` (edge only): the secret a device
    must present in its HELLO; empty means authentication is off."""

    def __init__(self, role: Role, token: str = "") -> None:
        if token and role is not Role.EDGE:
            raise ValueError("only the edge checks a token (a device puts it in its HELLO)")
        self.role = role
        self.token = token
        self.state = State.START
        self.peer: protocol.Hello | None = None  # the device's HELLO, once accepted (edge)

    @property
    def peer_role(self) -> Role:
        return Role.EDGE if self.role is Role.DEVICE else Role.DEVICE

    def _allowed(self, sender: Role, kind: MessageType) -> None:
        """Raise SessionError unless `sender` may send a `kind` message in the current state."""
        state = self.state
        if state is State.CLOSED:
            raise SessionError(f"{kind.name} after the session closed")
        if state is State.START:
            if sender is Role.DEVICE and kind is MessageType.HELLO:
                return
            if sender is Role.EDGE and kind is MessageType.ERROR:
                return  # the edge may refuse before the HELLO (busy, garbage, timeout)
            raise SessionError(f"expected HELLO first, got {kind.name} from the {sender.value}")
        if state is State.HELLO_SENT:
            if sender is Role.EDGE and kind in (MessageType.HELLO, MessageType.ERROR):
                return
            raise SessionError(f"{kind.name} from the {sender.value} before the edge answered "
                               "the HELLO")
        if kind not in OPEN_SENDS[sender]:
            raise SessionError(f"a {sender.value} does not send {kind.name}")

    def _advance(self, sender: Role, kind: MessageType) -> None:
        if kind in (MessageType.BYE, MessageType.ERROR):
            self.state = State.CLOSED
        elif kind is MessageType.HELLO:
            self.state = State.HELLO_SENT if sender is Role.DEVICE else State.OPEN

    def send(self, msg: Message) -> None:
        """Check that this side may send `msg` now, and advance the state."""
        kind = _type_of(msg)
        self._allowed(self.role, kind)
        self._advance(self.role, kind)

    def check_header(self, kind: MessageType, length: int) -> None:
        """Refuse a frame from the peer from its header alone (before its body is read)."""
        self._allowed(self.peer_role, kind)

    def authenticate(self, token: str) -> None:
        """Compare a HELLO's token with the edge's, in constant time."""
        if self.token and not hmac.compare_digest(token.encode("utf-8"),
                                                  self.token.encode("utf-8")):
            raise Unauthorized()

    def receive(self, msg: Message) -> Message:
        """Check a whole message from the peer against the rules (and the token), advance
        the state; returns the message."""
        kind = _type_of(msg)
        self._allowed(self.peer_role, kind)
        if isinstance(msg, protocol.Hello) and self.role is Role.EDGE:
            self.authenticate(msg.token)
            self.peer = msg
        self._advance(self.peer_role, kind)
        return msg

    def receive_frame(self, kind: MessageType, body: bytes) -> Message:
        """Decode a frame from the peer under the rules: the type first, then (for a HELLO
        on the edge) the token, and only then the config the peer chose."""
        self.check_header(kind, len(body))
        if kind is MessageType.HELLO and self.role is Role.EDGE:
            fields = protocol.decode_hello_fields(body)
            self.authenticate(fields.token)
            return self.receive(protocol.hello_config(fields))
        return self.receive(protocol.decode_body(kind, body))

    def receive_part_content(self, msg: Message) -> Message:
        """Check a message reassembled from PARTs: only what a device's uplink carries."""
        kind = _type_of(msg)
        if kind not in PART_CARRIES:
            raise SessionError(f"a PART does not carry {kind.name}")
        return self.receive(msg)
