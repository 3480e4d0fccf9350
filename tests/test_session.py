"""The session rules (stac/session.py): which message may come when, the token first."""

from __future__ import annotations

import pytest

from stac import protocol as P
from stac.protocol import ErrorCode, MessageType, ProtocolError
from stac.session import Role, Session, SessionError, State, Unauthorized

HELLO = P.Hello("cam-1", "jpeg", {"fps": 5.0}, token="s3cret")
KEYFRAME = P.Keyframe(index=0, t_capture=0.0, payload=b"x")
FEEDBACK = P.Feedback(index=0, segmentation=b"y")


def _body(msg: P.Message) -> tuple[MessageType, bytes]:
    frame = P.encode(msg)
    return P.parse_header(frame[:P.HEADER.size])[0], frame[P.HEADER.size:]


def test_a_whole_session_from_both_ends():
    device, edge = Session(Role.DEVICE), Session(Role.EDGE, token="s3cret")
    script = [(device, edge, HELLO), (edge, device, P.Hello("edge", "jpeg")),
              (device, edge, KEYFRAME), (device, edge, P.Report(0, 10.0, 20.0)),
              (device, edge, P.Content(0, 1.0, 2.0)), (edge, device, FEEDBACK),
              (edge, device, P.Config.of({"B": 1.0, "fps": 5.0}, t_effective=1.0)),
              (device, edge, P.Part(serial=1, data=b"ab")), (device, edge, P.Bye("done"))]
    for sender, receiver, msg in script:
        sender.send(msg)
        assert receiver.receive_frame(*_body(msg)) == msg
    assert device.state is edge.state is State.CLOSED
    assert edge.peer == HELLO


@pytest.mark.parametrize("first", [KEYFRAME, P.Report(0, 1.0, 1.0), P.Bye(""), FEEDBACK])
def test_hello_must_come_first(first):
    edge = Session(Role.EDGE)
    with pytest.raises(SessionError) as info:
        edge.check_header(_body(first)[0], 0)  # refused from the header, body unread
    assert info.value.code == ErrorCode.UNEXPECTED
    with pytest.raises(SessionError):
        Session(Role.DEVICE).send(first)


def test_each_side_sends_only_its_own_messages():
    device, edge = Session(Role.DEVICE), Session(Role.EDGE)
    ack = P.Hello("edge", "jpeg")
    device.send(HELLO)
    edge.receive(HELLO)
    edge.send(ack)
    device.receive(ack)
    assert device.state is edge.state is State.OPEN
    for msg in (FEEDBACK, P.Config.of({"B": 1.0, "fps": 5.0}), HELLO):
        with pytest.raises(SessionError):
            edge.receive(msg)  # a device does not send these
    for msg in (KEYFRAME, P.Report(0, 1.0, 1.0), HELLO):
        with pytest.raises(SessionError):
            device.receive(msg)  # an edge does not send these
    with pytest.raises(SessionError):
        device.receive_part_content(FEEDBACK)
    edge.receive(P.Bye("bye"))
    with pytest.raises(SessionError, match="closed"):
        edge.receive(KEYFRAME)


def test_device_waits_for_the_edge_answer():
    device = Session(Role.DEVICE)
    device.send(HELLO)
    with pytest.raises(SessionError):
        device.send(KEYFRAME)  # not before the edge accepted the HELLO
    device.receive(P.Error(int(ErrorCode.BUSY), "full"))
    assert device.state is State.CLOSED


def test_token_is_checked_before_the_config_is_parsed():
    edge = Session(Role.EDGE, token="s3cret")
    deep = b"[" * 5000 + b"]" * 5000  # would be MALFORMED (too deep) if it were parsed
    kind, body = _body(P.Hello("intruder", "jpeg", {}, token="guess"))
    body = body.replace(b"\x00\x00\x00\x02{}", len(deep).to_bytes(4, "big") + deep)
    with pytest.raises(Unauthorized) as info:
        edge.receive_frame(kind, body)
    assert info.value.code == ErrorCode.UNAUTHORIZED and edge.state is State.START
    with pytest.raises(ProtocolError) as info:  # the right token: now the config is parsed
        Session(Role.EDGE).receive_frame(kind, body)
    assert info.value.code == ErrorCode.MALFORMED and "deep" in info.value.text
    with pytest.raises(Unauthorized):
        Session(Role.EDGE, token="s3cret").receive(P.Hello("d", "jpeg"))  # no token
    with pytest.raises(ValueError):
        Session(Role.DEVICE, token="x")
