"""The simulated links against delivery times computed by hand (STAC §VII)."""

import math

import numpy as np
import pytest
import simpy

from stac.sim.link import Downlink, Packet, Uplink
from stac.traces import Trace

# 1 Mbps over [0, 1), nothing over [1, 2), 2 Mbps over [2, 3), 0.5 Mbps over [3, 4); repeats.
TRACE = Trace(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1000.0, 0.0, 2000.0, 500.0]),
              name="hand", end_s=4.0)
DELAY = 0.05


def _uplink(env, arrived, dropped=None):
    return Uplink(env, TRACE, DELAY, on_arrival=arrived.append,
                  on_drop=dropped.append if dropped is not None else None)


def _send_at(env, link, t, packet):
    def proc():
        yield env.timeout(t)
        link.send(packet)
    env.process(proc())


def test_single_packet_within_one_rate():
    env, arrived = simpy.Environment(), []
    link = _uplink(env, arrived)
    p = Packet("a", nbytes=750)  # 6000 bits at 1 Mbps = 6 ms
    link.send(p)
    env.run()
    assert arrived == [p]
    assert p.t_sent == pytest.approx(0.006)
    assert p.t_arrived == pytest.approx(0.006 + DELAY)


def test_rate_change_mid_frame_and_zero_gap_then_fifo():
    env, arrived = simpy.Environment(), []
    link = _uplink(env, arrived)
    big = Packet("big", nbytes=250_000)  # 2e6 bits
    small = Packet("small", nbytes=125)  # 1000 bits, queued behind `big`
    _send_at(env, link, 0.5, big)
    _send_at(env, link, 0.6, small)
    env.run()
    # 0.5 Mb in [0.5, 1) at 1 Mbps, nothing in [1, 2), the remaining 1.5 Mb at 2 Mbps: 0.75 s
    assert big.t_sent == pytest.approx(2.75)
    assert big.t_arrived == pytest.approx(2.75 + DELAY)
    # FIFO: `small` starts when `big` is done, 1000 bits at 2 Mbps
    assert small.t_start == pytest.approx(2.75)
    assert small.t_sent == pytest.approx(2.7505)
    assert [p.payload for p in arrived] == ["big", "small"]


def test_crosses_trace_end_and_repeats():
    env, arrived = simpy.Environment(), []
    link = _uplink(env, arrived)
    p = Packet("wrap", nbytes=125_000)  # 1e6 bits from t=3.5
    _send_at(env, link, 3.5, p)
    env.run()
    # 0.25 Mb in [3.5, 4) at 0.5 Mbps, then the trace repeats: 0.75 Mb at 1 Mbps -> 4.75
    assert p.t_sent == pytest.approx(4.75)


def test_discard_drops_in_flight_and_queued_but_not_propagating():
    env, arrived, dropped = simpy.Environment(), [], []
    link = _uplink(env, arrived, dropped)
    done = Packet("done", nbytes=1000)  # 8000 bits: sent at 0.008, arrives 0.058
    flying = Packet("flying", nbytes=250_000)  # would finish at 2.75 (see above)
    queued = Packet("queued", nbytes=100)
    after = Packet("after", nbytes=500)  # 4000 bits sent at 1.6, in the zero gap
    link.send(done)
    _send_at(env, link, 0.03, flying)  # 'done' is propagating (0.008 -> 0.058) at the discard
    _send_at(env, link, 0.04, queued)

    def reconfigure():
        yield env.timeout(0.045)
        link.discard()
    env.process(reconfigure())
    _send_at(env, link, 1.6, after)
    env.run()
    assert [p.payload for p in dropped] == ["flying", "queued"]
    assert flying.dropped and queued.dropped and not done.dropped
    assert math.isnan(flying.t_arrived) and math.isnan(queued.t_arrived)
    assert done.t_arrived == pytest.approx(0.008 + DELAY)
    # the link is free again: `after` waits out the zero gap, then 4000 bits at 2 Mbps
    assert after.t_sent == pytest.approx(2.002)
    assert [p.payload for p in arrived] == ["done", "after"]
    assert link.backlog_bytes == 0


def test_zero_trace_never_delivers():
    env, arrived = simpy.Environment(), []
    zero = Trace(np.array([0.0]), np.array([0.0]), end_s=1.0)
    link = Uplink(env, zero, 0.0, on_arrival=arrived.append)
    link.send(Packet("x", nbytes=10))
    env.run(until=100)
    assert arrived == [] and link.backlog_bytes == 10


def test_downlink_delay_and_rate_fifo():
    env, arrived = simpy.Environment(), []
    link = Downlink(env, delay_s=0.03, kbps=800.0, on_arrival=arrived.append)
    a, b = Packet("a", nbytes=1000), Packet("b", nbytes=500)  # 10 ms and 5 ms at 800 kbps
    link.send(a)
    link.send(b)
    env.run()
    assert a.t_arrived == pytest.approx(0.010 + 0.03)
    assert b.t_arrived == pytest.approx(0.015 + 0.03)
    env2, arrived2 = simpy.Environment(), []
    free = Downlink(env2, delay_s=0.03, kbps=None, on_arrival=arrived2.append)
    c = Packet("c", nbytes=10**6)
    free.send(c)
    env2.run()
    assert c.t_arrived == pytest.approx(0.03)


def test_bad_delays_rejected():
    env = simpy.Environment()
    with pytest.raises(ValueError, match="delay"):
        Uplink(env, TRACE, -1.0, on_arrival=print)
    with pytest.raises(ValueError, match="rate"):
        Downlink(env, 0.0, 0.0, on_arrival=print)
