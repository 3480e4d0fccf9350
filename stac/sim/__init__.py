"""SimPy discrete-event harness: both sans-IO halves of a scheme in simulated time."""

from stac.sim.harness import FrameRecord, LinkConfig, RunSink, SecondRecord, SimResult, Simulation
from stac.sim.link import Downlink, Packet, Uplink

__all__ = ["Downlink", "FrameRecord", "LinkConfig", "Packet", "RunSink", "SecondRecord",
           "SimResult", "Simulation", "Uplink"]
