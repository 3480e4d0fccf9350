"""An edge and one device in one process over loopback TCP: the emulator's real sockets,
session and paced uplink without spawning processes (conformance checks, notebooks)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stac.emu.build import build_stream, edge_factory
from stac.emu.device_main import DeviceClient, DeviceResult, LinkOptions
from stac.emu.edge_main import EdgeOptions, EdgeServer
from stac.results import RunWriter, write_summary
from stac.sim.runner import RunOptions


def emulate_local(options: RunOptions, timeout_s: float = 300.0
                  ) -> tuple[DeviceResult, dict[str, Any]]:
    """Stream `options` from a device to an edge served in this process over 127.0.0.1;
    writes the device's outputs (frames.csv, seconds.csv, summary.json) into
    `options.out`. Returns the device's totals and the edge's summary."""
    setup = build_stream(options)
    tables = getattr(options.scheme, "tables", None)  # this process's own files: offered
    tuner_file = options.tuner.partition(":")[2]
    factory, name = edge_factory(options.model, seed=options.seed,
                                 tables=[tables] if tables else [],
                                 tuner_files=[tuner_file] if tuner_file else [])
    link = LinkOptions(delay_s=options.delay_ms / 1000.0,
                       downlink_delay_s=None if options.downlink_delay_ms is None
                       else options.downlink_delay_ms / 1000.0,
                       downlink_kbps=options.downlink_kbps)

    async def scenario() -> tuple[DeviceResult, dict[str, Any]]:
        server = EdgeServer(EdgeOptions(), factory, model=name)
        host, port = await server.start()
        writer = RunWriter(options.out, setup.start.as_dict())
        client = DeviceClient(setup.agent, setup.start, options.scheme.name, setup.hello,
                              (host, port), setup.trace, setup.evaluate, writer, link=link,
                              estimator=setup.estimator)
        try:
            result = await client.run(setup.frames)
        finally:
            writer.close()
            await asyncio.sleep(0.2)  # let the edge read the device's goodbye
            await server.stop()
        return result, server.summary()

    result, edge = asyncio.run(asyncio.wait_for(scenario(), timeout_s))
    write_summary(Path(options.out), {**setup.meta, "driver": "emulator (in process)",
                                      "wall_s": result.wall_s})
    return result, edge
