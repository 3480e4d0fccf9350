"""Edge segmentation models behind one streaming interface, and their registry."""

from edge.models.base import (
    CLASS_NAMES,
    IGNORE_INDEX,
    NUM_CLASSES,
    ModelCost,
    ModelError,
    StreamingSegmenter,
    segment,
)
from edge.models.registry import build_model, list_models, load_model, resolve_model

__all__ = [
    "CLASS_NAMES", "IGNORE_INDEX", "NUM_CLASSES", "ModelCost", "ModelError", "StreamingSegmenter",
    "build_model", "list_models", "load_model", "resolve_model", "segment",
]
