"""Masks that come with the data: the manifest's ``ref_mask_uri`` (the synthetic species, or a dataset
that ships annotations). An oracle for demos and for measuring the learned segmenters against."""

from __future__ import annotations

import numpy as np

from reid_core.data import files as io
from reid_core.segmentation.base import SegmentationResult, SegmenterOptions, SegmenterSpec
from reid_core.segmentation.masking import mask_from_png


class ReferenceSegmenter:
    name = "reference"

    def __init__(self, column: str = "ref_mask_uri", filesystem=None):
        self.column = column
        self.filesystem = filesystem

    def segment(self, image: np.ndarray, row: dict | None = None) -> SegmentationResult:
        uri = (row or {}).get(self.column)
        if not uri:
            return SegmentationResult(None, self.name, "failed",
                                      f"no {self.column} in this row: the reference method needs a mask per image")
        mask = mask_from_png(io.read_image(uri, self.filesystem, mode="L"))
        if mask.shape != image.shape[:2]:
            return SegmentationResult(None, self.name, "failed",
                                      f"reference mask {uri} is {mask.shape[1]}x{mask.shape[0]}, "
                                      f"the image {image.shape[1]}x{image.shape[0]}")
        if not mask.any():
            return SegmentationResult(mask, self.name, "flagged", "reference mask is empty")
        return SegmentationResult(mask, self.name)


class ReferenceOptions(SegmenterOptions):
    column: str = "ref_mask_uri"  # the manifest column holding each row's mask


REFERENCE = SegmenterSpec(ReferenceOptions, lambda options: ReferenceSegmenter(options.column))
