"""What a pixel of the animal is: its part label (the part masks) and its tone (looked up in the
individual's palette), drawn from canonical polygons through the image's pose."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from reid_core.data.synthetic.geometry import Pose

PART_NAMES = ("background", "head", "body", "front_legs", "hind_legs", "tail")
HEAD, BODY, FRONT_LEGS, HIND_LEGS, TAIL = 1, 2, 3, 4, 5

# Tones. FAR marks the far-side limbs and horn/tusk, drawn darker (FAR_DIM).
BASE, PATTERN, LIGHT, IVORY, HORN, EAR, EDGE, DARK = 1, 2, 3, 4, 5, 6, 7, 8
FAR = 16
FAR_DIM = 0.72


class Canvas:
    """Draws canonical polygons into a part-label layer and a tone layer, plus pattern layers that only
    recolour base-toned pixels (``trunk`` marks outside the head, ``head`` marks on the head)."""

    def __init__(self, size: int, pose: Pose):
        self.size = size
        self._m = pose.matrix()
        self._t = np.array([pose.cx, pose.cy])
        self.labels = Image.new("L", (size, size))
        self.tones = Image.new("L", (size, size))
        self.trunk_marks = Image.new("L", (size, size))
        self.head_marks = Image.new("L", (size, size))
        self._dl = ImageDraw.Draw(self.labels)
        self._dt = ImageDraw.Draw(self.tones)
        self._marks = {"trunk": ImageDraw.Draw(self.trunk_marks), "head": ImageDraw.Draw(self.head_marks)}

    def _px(self, points: np.ndarray) -> list[float]:
        return (points @ self._m.T + self._t).ravel().tolist()

    def shape(self, points: np.ndarray, part: int, tone: int, far: bool = False, edge: int | None = None) -> None:
        xy = self._px(points)
        self._dl.polygon(xy, fill=part)
        self._dt.polygon(xy, fill=tone + (FAR if far else 0))
        if edge is not None:
            closed = xy + xy[:2]
            self._dl.line(closed, fill=part, width=1)
            self._dt.line(closed, fill=edge, width=1)

    def mark(self, points: np.ndarray, tone: int, where: str = "trunk") -> None:
        self._marks[where].polygon(self._px(points), fill=tone)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        labels = np.asarray(self.labels).copy()
        tones = np.asarray(self.tones).copy()
        base = (tones == BASE) | (tones == BASE + FAR)
        far = tones >= FAR
        for layer, on_head in ((self.trunk_marks, False), (self.head_marks, True)):
            marks = np.asarray(layer)
            hit = base & (marks > 0) & ((labels == HEAD) == on_head)
            tones[hit] = marks[hit] + far[hit] * FAR
        return labels, tones
