"""The loopback emulator: device and edge as real processes over TCP, in wall-clock time.

`stac-edge serve` (`edge_main`) and `stac-device stream` (`device_main`) drive the same
sans-IO agents as `stac.sim`; `link` paces the device's uplink to a bandwidth trace.
"""
