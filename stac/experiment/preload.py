"""What a sweep worker imports before its first run, once: the forkserver imports it and
forks every worker from there, so no worker pays the imports (seconds) or its first run
the lazy ones. Ray workers run `setup` when they start."""

from __future__ import annotations

import importlib

# the simulator, the plotting of timeline.png, and the schemes' halves (imported lazily by
# `stac.schemes`); a module a later version renames is skipped
MODULES = ("stac.sim.runner", "stac.experiment.runs", "matplotlib.pyplot", "device.offload",
           "edge.offload", "device.stac_agent", "edge.stac_agent", "edge.tables", "av", "cv2")


def setup() -> None:
    """Import `MODULES` (Agg backend for matplotlib) and limit threads to one."""
    import matplotlib

    matplotlib.use("Agg")
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from stac.experiment.runs import limit_threads

    limit_threads()


setup()
