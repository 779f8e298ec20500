"""The contract between a segmenter and the Ray Data pipeline that runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class SegmentationResult:
    """One image's outcome. ``mask`` is a boolean H x W array (True = animal) unless ``status`` is failed.

    ``status`` takes the manifest's ``seg_status`` values: ``ok``, ``fallback`` (the criterion accepted
    nothing and the no-pass policy supplied a mask), ``flagged`` (nothing accepted, the image kept as is
    for a person to look at) or ``failed`` (``error`` says why).
    """

    mask: np.ndarray | None
    method: str
    status: str = "ok"
    error: str | None = None
    details: dict = field(default_factory=dict)


class Segmenter(Protocol):
    """Anything that turns an RGB uint8 H x W x 3 image into a foreground mask.

    ``row`` is the manifest row, for segmenters that need more than pixels (reference masks).
    """

    name: str

    def segment(self, image: np.ndarray, row: dict | None = None) -> SegmentationResult: ...
