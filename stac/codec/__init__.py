"""H.264-style block codec with per-region quantisation tables (STAC §VII), and references.

    enc = Encoder(width, height)                 # default: 52-level H.264 QP ladder
    ef = enc.encode(rgb, levels)                 # levels: int or (grid) array, see enc.grid
    ef.data, ef.reconstruction, ef.stats         # bytes, RGB the decoder will output, stats
    Decoder().decode(ef.data) -> rgb             # keeps its own reference frame

See docs/codec.md for the bitstream, the coefficient layout and the region maps.
"""

from stac.codec.decoder import Decoder
from stac.codec.encoder import EncodedFrame, Encoder, FrameStats, Reference
from stac.codec.errors import BitstreamError
from stac.codec.quant import TableSet, default_tables, region_grid_shape
from stac.codec.transform import coeffs_to_rgb, coeffs_to_rgb_torch, rgb_to_coeffs

__all__ = [
    "BitstreamError",
    "Decoder",
    "EncodedFrame",
    "Encoder",
    "FrameStats",
    "Reference",
    "TableSet",
    "coeffs_to_rgb",
    "coeffs_to_rgb_torch",
    "default_tables",
    "region_grid_shape",
    "rgb_to_coeffs",
]
