"""SimPy discrete-event harness: both sans-IO halves of a scheme in simulated time."""

from stac.sim.harness import LinkConfig, SimResult, Simulation

__all__ = ["LinkConfig", "SimResult", "Simulation"]
