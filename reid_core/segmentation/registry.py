"""Segmenters by name, so a pipeline can ship a picklable (name, options) pair to its actors and build
the models there, next to the GPU. The registry imports the implementations (on first use: SAM and the
foreground runtime are heavy); they never import the registry. Each name has typed options
(``SegmenterOptions``, pydantic, unknown names refused); ``package.module:builder`` names your own
builder, called with the options as keywords."""

from __future__ import annotations

from typing import Any

from reid_core.named_builders import NamedBuilders
from reid_core.segmentation.base import Segmenter, SegmenterOptions

# name -> "module:SegmenterSpec"
_SEGMENTERS = {
    "isnet": "reid_core.segmentation.segmenters:ISNET",
    "reference": "reid_core.segmentation.reference:REFERENCE",
    "sam": "reid_core.segmentation.segmenters:SAM",
    "sam+isnet": "reid_core.segmentation.segmenters:SAM_ISNET",
}

_REGISTRY = NamedBuilders("segmenter", "segmentation method", _SEGMENTERS, SegmenterOptions)
names = _REGISTRY.names
is_custom = _REGISTRY.is_custom
spec = _REGISTRY.spec
option_names = _REGISTRY.option_names
parse_options = _REGISTRY.parse_options


def build_segmenter(name: str, options: dict[str, Any] | SegmenterOptions | None = None) -> Segmenter:
    """A segmenter from a registered name, or from ``package.module:builder`` (your own code)."""
    return _REGISTRY.build(name, options)
