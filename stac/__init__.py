"""STAC-sim: what the device and edge share, and the harnesses that drive them."""

__version__ = "0.1.0"
