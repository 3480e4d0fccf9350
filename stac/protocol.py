"""Messages between device and edge (DESIGN.md data flow), shared by both drivers.

These dataclasses are what the sans-IO halves exchange. Payloads are real bytes: the
encoded keyframe, the encoded segmentation and region-level map. The byte encoding of the
messages themselves for the socket emulator (length prefix, type tag, validation) lives in
this module too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hello:
    """Session start: the device names its scheme and configuration."""

    device_id: str
    scheme: str
    config: dict[str, Any] = field(default_factory=dict)
    token: str = ""


@dataclass(frozen=True)
class Keyframe:
    """An encoded keyframe on the uplink; `payload` is the codec's real bitstream."""

    index: int
    t_capture: float
    payload: bytes


@dataclass(frozen=True)
class Feedback:
    """The edge's answer to keyframe `index`: its segmentation and region levels, as bytes."""

    index: int
    segmentation: bytes
    levels: bytes = b""


@dataclass(frozen=True)
class Config:
    """A compression configuration (STAC §VI) that takes effect at `t_effective`."""

    B: float
    fps: float
    t_effective: float


@dataclass(frozen=True)
class Content:
    """Content metrics of one second (STAC §VI): complexity c and inter-frame difference d."""

    second: int
    c: float
    d: float
