"""The contract between a segmenter and the Ray Data pipeline that runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict


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


class SegmenterOptions(BaseModel):
    """A segmenter's options, typed: strings from ``--set key=value`` are coerced, unknown names refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class SegmenterSpec:
    """What the registry lists per name: the options model and the builder that takes it (run once per
    Ray actor, next to the GPU)."""

    options: type[SegmenterOptions]
    build: Callable[[SegmenterOptions], Segmenter]
