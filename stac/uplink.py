"""The uplink's schedule, pure: a FIFO served at a bandwidth trace's rate (STAC §VII).

Both drivers use it: the SimPy link waits in simulated time and the emulator's paced link
sleeps in wall time until the times it computes, so they serialise the same bytes at the
same moments by construction. Transmission ends at `trace.time_to_send(start, bits)`,
the exact integral across rate changes and zero-bandwidth gaps.
"""

from __future__ import annotations

from stac.traces import Trace


class UplinkSchedule:
    """When each message's last bit leaves the sender, in FIFO order over `trace`."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.free_at = 0.0  # when the link is next idle

    def transmit(self, t_ready: float, nbytes: int) -> tuple[float, float]:
        """A message of `nbytes` ready at `t_ready` -> (start, end) of its transmission
        (end is inf while the trace never delivers); the link is busy until its end."""
        start = max(t_ready, self.free_at)
        self.free_at = self.trace.time_to_send(start, 8 * nbytes)
        return start, self.free_at

    def abort(self, t: float) -> None:
        """The message in transmission was discarded at `t`: the link is free from then."""
        self.free_at = t
