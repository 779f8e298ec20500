"""Box arithmetic: IoU, clipping, the crop window with a margin, greedy matching against ground truth."""

from __future__ import annotations

import math
from collections.abc import Sequence

Box = Sequence[float]  # (x0, y0, x1, y1), pixel edges


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clip(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)


def crop_window(box: Box, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """Integer pixel window around ``box`` grown by ``margin`` x its size on every side, inside the photo."""
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    left, top = max(0, math.floor(x0 - mx)), max(0, math.floor(y0 - my))
    right, bottom = min(width, math.ceil(x1 + mx)), min(height, math.ceil(y1 + my))
    return left, top, max(right, left + 1), max(bottom, top + 1)


def match(predicted: Sequence[Box], truth: Sequence[Box], threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matches (predicted index, truth index, IoU) with IoU >= ``threshold``, best first
    (the usual detection-evaluation matching; predictions should come in descending score order)."""
    pairs = sorted(((iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)), reverse=True)
    used_p, used_t, out = set(), set(), []
    for value, i, j in pairs:
        if value < threshold or i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        out.append((i, j, value))
    return out
