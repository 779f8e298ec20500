"""The contract between a detector and the detection stage that runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Detection:
    """One animal: ``box`` = (x0, y0, x1, y1) in pixels of the photo (pixel edges, x1/y1 exclusive).

    ``labels`` are manifest columns the detector knows for this animal (the ``reference`` detector knows
    ``individual``, ``entity``, ``side`` and ``ref_mask_uri``; a learned detector knows none). ``mask`` is
    an optional photo-sized boolean mask of the animal."""

    box: tuple[float, float, float, float]
    score: float
    category: str = "animal"
    labels: dict = field(default_factory=dict)
    mask: np.ndarray | None = None


class Detector(Protocol):
    """Anything that finds animals in an RGB uint8 H x W x 3 photo. ``row`` is the manifest row (for
    detectors that need more than pixels, such as the reference boxes). ``version`` names the weights."""

    name: str
    version: str

    def detect(self, image: np.ndarray, row: dict | None = None) -> list[Detection]: ...


class DetectorOptions(BaseModel):
    """A detector's options, typed: strings from ``--set key=value`` are coerced, unknown names refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class DetectorSpec:
    """What the registry lists per name: the options model and the builder (run once per Ray actor)."""

    options: type[DetectorOptions]
    build: Callable[[DetectorOptions], Detector]
