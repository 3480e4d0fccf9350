"""The sans-IO contract between the algorithm halves and the two drivers.

A scheme is a pair (DeviceAgent, EdgeAgent). Agents take inputs (frames, messages, the
time they are given) and return outputs plus `Work` records; they never read clocks,
sleep, open sockets or know SimPy. A driver (`stac.sim`, `stac.emu`) moves the messages
and turns `Work` into time: a hardware profile maps each record to a duration (STAC
Table II), the `measured` profile uses the wall time of the call instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from stac.protocol import Config, Content, Feedback, Keyframe


@dataclass(frozen=True)
class Work:
    """One unit of computation: its kind (e.g. "flow", "encode", "inference") and size.

    `pixels` is the frame area it ran on; a latency profile scales its reference time by it.
    """

    kind: str
    pixels: int


@dataclass
class DeviceOutput:
    """What the device produces for one captured frame."""

    segmentation: np.ndarray | None  # (H, W) uint8 labels shown for this frame; None before any
    result_index: int | None  # index of the keyframe whose result was shown (or propagated)
    keyframe: Keyframe | None  # to put on the uplink, if this frame is a keyframe
    work: list[Work] = field(default_factory=list)
    # True when `segmentation` was propagated to this very frame (its delay then counts from
    # this frame's capture); False when it is the keyframe's result shown as is (the delay
    # counts from the keyframe's capture, STAC §VIII-C).
    propagated: bool = False


@dataclass
class EdgeOutput:
    """What the edge produces for one received keyframe."""

    feedback: Feedback
    work: list[Work] = field(default_factory=list)


class DeviceAgent(ABC):
    """The device half of a scheme: one object per stream."""

    @abstractmethod
    def on_frame(self, index: int, t: float, frame: np.ndarray) -> DeviceOutput:
        """A captured RGB frame (H, W, 3) uint8 at time `t` -> the output shown for it."""

    @abstractmethod
    def on_feedback(self, feedback: Feedback) -> list[Work]:
        """Cache the edge's result for a keyframe."""

    def on_config(self, config: Config) -> None:
        """Adopt a new configuration (fps decides which frames are keyframes)."""
        return None

    def content(self, second: int) -> Content | None:
        """Content metrics of the second just ended, for the configuration step (STAC §VI)."""
        return None


class EdgeAgent(ABC):
    """The edge half of a scheme: one object per connected device."""

    @abstractmethod
    def on_keyframe(self, keyframe: Keyframe) -> EdgeOutput:
        """Decode, segment (and for STAC, compute the compression strategy) one keyframe."""

    def on_second(self, second: int, bitrate_kbps: float, bandwidth_kbps: float,
                  content: Content | None) -> Config | None:
        """Once per second: a new configuration, or None to keep the current one (STAC §VI)."""
        return None
