"""Detectors by name, so a pipeline can ship a picklable (name, options) pair to its actors and build the
model there, next to the GPU. The registry imports the implementations (on first use: transformers is
heavy); they never import the registry. Each name has typed options (``DetectorOptions``, pydantic,
unknown names refused); ``package.module:builder`` names your own builder, called with the options as
keywords."""

from __future__ import annotations

from typing import Any

from reid_core.detection.base import Detector, DetectorOptions
from reid_core.named_builders import NamedBuilders

# name -> "module:DetectorSpec"
_DETECTORS = {
    "megadetector": "reid_core.detection.megadetector:MEGADETECTOR",
    "reference": "reid_core.detection.reference:REFERENCE",
}

_REGISTRY = NamedBuilders("detector", "detector", _DETECTORS, DetectorOptions)
names = _REGISTRY.names
is_custom = _REGISTRY.is_custom
spec = _REGISTRY.spec
option_names = _REGISTRY.option_names
parse_options = _REGISTRY.parse_options


def build_detector(name: str, options: dict[str, Any] | DetectorOptions | None = None) -> Detector:
    """A detector from a registered name, or from ``package.module:builder`` (your own code)."""
    return _REGISTRY.build(name, options)
