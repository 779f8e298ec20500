"""The four legs every species draws the same way (near or far pair), swung by the pose's stride."""

from __future__ import annotations

import numpy as np

from reid_core.data.synthetic.canvas import BASE, FRONT_LEGS, HIND_LEGS, Canvas
from reid_core.data.synthetic.geometry import Pose, bezier, stroke


def leg_controls(pose: Pose, spec: dict, far: bool) -> list[tuple[int, tuple]]:
    """(part, (hip, knee control, foot)) of the front and the hind leg of one pair, in canonical units;
    the keypoints read the same curves the drawing strokes."""
    controls = []
    k = 1 if far else 0
    for part, key, sign in ((FRONT_LEGS, "front", 1.0), (HIND_LEGS, "hind", -1.0)):
        x, y = spec[key][k]
        swing = (sign if far else -sign) * pose.stride * spec["swing"]
        knee = spec["knee"] if key == "hind" else 0.0
        controls.append((part, ((x, y), (x + knee + swing * 0.3, y + spec["length"] * 0.5), (x + swing, spec["ground"]))))
    return controls


def legs(c: Canvas, pose: Pose, spec: dict, far: bool) -> list[tuple[int, np.ndarray]]:
    """Four legs from ``spec`` = {front: [(x, y_hip)...near/far], hind: ..., length, w0, w1, knee}."""
    drawn = []
    for part, (hip, knee, foot) in leg_controls(pose, spec, far):
        line = bezier(hip, knee, foot, 8)
        c.shape(stroke(line, spec["w0"], spec["w1"]), part, BASE, far=far)
        drawn.append((part, line))
    return drawn
