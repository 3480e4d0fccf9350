"""What a built scheme is: its two sans-IO halves, the starting configuration, and the
stream they were built for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stac.agents import DeviceAgent, EdgeAgent
from stac.protocol import Config


@dataclass(frozen=True)
class Stream:
    """The captured stream a scheme is built for: the source frame rate, the frame size
    (w, h), and an optional fixed `schedule` {second: fps} of configuration changes
    (fixed-configuration experiments; empty: the configuration never changes), and the
    edge's per-second `tuner` spec (`edge.tuner.make_tuner`; default "fixed")."""

    source_fps: float
    frame_size: tuple[int, int]
    schedule: Mapping[int, float] = field(default_factory=dict)
    tuner: str = "fixed"

    def __post_init__(self) -> None:
        if not self.source_fps > 0:
            raise ValueError(f"source_fps must be > 0, got {self.source_fps}")
        w, h = (int(v) for v in self.frame_size)
        if w <= 0 or h <= 0:
            raise ValueError(f"frame size must be positive, got {self.frame_size}")
        object.__setattr__(self, "frame_size", (w, h))
        schedule = {int(k): float(v) for k, v in dict(self.schedule).items()}
        if any(not v > 0 for v in schedule.values()):
            raise ValueError(f"scheduled fps must be > 0, got {schedule}")
        object.__setattr__(self, "schedule", schedule)
        if schedule and self.tuner not in ("fixed", "auto"):
            raise ValueError(f"a fixed fps schedule needs the fixed tuner, not {self.tuner!r}")


@dataclass
class Scheme:
    """A scheme instance: its two sans-IO halves and the configuration they start with."""

    name: str
    device: DeviceAgent
    edge: EdgeAgent
    config: Config
