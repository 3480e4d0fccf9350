"""The device half of STAC: optical flow, propagation, residual levels, content metrics.

Sans-IO: objects here take inputs and return outputs and cost records; they never read
clocks, sleep, open sockets or know SimPy (DESIGN.md).
"""
