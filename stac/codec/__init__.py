"""H.264-style block codec with per-region quantisation tables (STAC §VII), and references."""
