"""The edge half of STAC: segmentation backbones, DCT-domain gradients, table selection.

Sans-IO: objects here take inputs and return outputs and cost records; they never read
clocks, sleep, open sockets or know SimPy (DESIGN.md).
"""
