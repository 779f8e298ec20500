"""Boxes that come with the data: the row's ``ref_boxes_uri`` (the synthetic whole photos, or a dataset
with box annotations in that JSON form). An oracle for demos, tests and measuring learned detectors."""

from __future__ import annotations

import json

import numpy as np

from reid_core.data import files as io
from reid_core.detection.base import Detection, DetectorOptions, DetectorSpec

LABELS = ("individual", "entity", "side")  # copied onto the crop rows: the reference knows who is where


class ReferenceDetector:
    name = "reference"
    version = "ref-boxes"

    def __init__(self, column: str = "ref_boxes_uri", labels: bool = True, filesystem=None):
        self.column, self.labels, self.filesystem = column, labels, filesystem

    def detect(self, image: np.ndarray, row: dict | None = None) -> list[Detection]:
        uri = (row or {}).get(self.column)
        if not uri:
            raise ValueError(f"no {self.column} in this row: the reference detector needs a boxes file per photo "
                             "(write whole photos with `reid synthetic --whole-photos N`)")
        height, width = image.shape[:2]
        detections = []
        for k, animal in enumerate(json.loads(io.read_bytes(uri, self.filesystem))):
            x0, y0, x1, y1 = (float(v) for v in animal["box"])
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise ValueError(f"{uri} animal {k}: box {animal['box']} is not inside the {width}x{height} photo")
            labels = {key: animal[key] for key in LABELS if self.labels and animal.get(key) is not None}
            if animal.get("mask_uri"):
                labels["ref_mask_uri"] = animal["mask_uri"]
            detections.append(Detection((x0, y0, x1, y1), float(animal.get("score", 1.0)), "animal", labels))
        return detections


class ReferenceOptions(DetectorOptions):
    column: str = "ref_boxes_uri"  # the manifest column naming each photo's boxes file
    labels: bool = True  # copy the animals' identities onto the crop rows (off: crops as a detector sees them)


REFERENCE = DetectorSpec(ReferenceOptions, lambda o: ReferenceDetector(o.column, o.labels))
