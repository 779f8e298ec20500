"""Tiger-like: a striped flank pattern per side, face marks and tail rings."""

from __future__ import annotations

import math

import numpy as np

from reid_core.data.synthetic import colours, limbs
from reid_core.data.synthetic.canvas import BASE, BODY, DARK, HEAD, LIGHT, PATTERN, TAIL, Canvas
from reid_core.data.synthetic.geometry import Pose, bezier, ellipse, first_outside, rotate, stroke

EXTENT = (-0.47, -0.22, 0.56, 0.35)  # canonical bounding box (x0, y0, x1, y1)
CUES = "flank stripe pattern (one per side), face marks, tail rings"
LEGS = {"front": [(-0.17, 0.02), (-0.12, 0.02)], "hind": [(0.21, 0.02), (0.25, 0.02)],
        "length": 0.3, "ground": 0.34, "w0": 0.07, "w1": 0.05, "swing": 0.07, "knee": 0.05}
TRUNK = ((0.04, 0.0, 0.27, 0.11), (-0.16, -0.005, 0.13, 0.12), (0.2, -0.01, 0.11, 0.115))  # body ellipses
HEAD_PIVOT = (-0.26, -0.05)  # the head tilts about the neck
EARS = (np.array([[-0.31, -0.13], [-0.28, -0.2], [-0.25, -0.11]]),  # the near (shown side's) ear, behind
        np.array([[-0.39, -0.12], [-0.37, -0.2], [-0.33, -0.13]]))  # the far ear, towards the nose
NOSE = (-0.455, -0.045)


def _flank(rng: np.random.Generator) -> list[tuple]:
    stripes = []
    for x in np.sort(rng.uniform(-0.27, 0.32, rng.integers(11, 17))):
        stripes.append((
            float(x),
            bool(rng.random() < 0.7),  # from the back (else from the belly)
            float(rng.uniform(0.05, 0.19)),  # length
            float(rng.uniform(-0.07, 0.07)),  # tilt
            float(rng.uniform(-0.035, 0.035)),  # bend
            float(rng.uniform(0.014, 0.03)),  # width
            bool(rng.random() < 0.3),  # forked
        ))
    return stripes


def signature(rng: np.random.Generator) -> dict:
    return {
        "colour": colours.jitter(rng, (214, 118, 42)),
        "left": _flank(rng),
        "right": _flank(rng),
        "face": [(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.06, 0.0)), float(rng.uniform(-0.8, 0.8)))
                 for _ in range(rng.integers(2, 5))],
        "rings": np.sort(rng.uniform(0.25, 0.95, rng.integers(3, 6))).tolist(),
    }


TAIL_ROOT_WIDTH = 0.04  # the tail stroke's width where it leaves the body (its keypoint clears the body by it)


def tail_line(pose: Pose, n: int = 14) -> np.ndarray:
    swing = pose.tail
    return bezier((0.29, -0.05), (0.47, 0.06 + 0.06 * swing), (0.53, -0.06 - 0.12 * swing), n)


def landmarks(sig: dict, side: str, pose: Pose) -> dict:
    """Canonical head, tail and body keypoints (the legs come from LEGS): ears at their centres, the
    nose, the tail's root where it clears the body by its own width, the body's centre."""
    near_ear, far_ear, nose = rotate(np.array([EARS[0].mean(axis=0), EARS[1].mean(axis=0), NOSE]), HEAD_PIVOT,
                                     pose.head)
    return {"near_ear": near_ear, "far_ear": far_ear, "nose": nose,
            "tail": first_outside(tail_line(pose, 60), TRUNK, margin=TAIL_ROOT_WIDTH), "center": np.array(TRUNK[0][:2])}


def draw(c: Canvas, sig: dict, side: str, pose: Pose) -> None:
    legs = LEGS
    limbs.legs(c, pose, legs, far=True)
    # tail
    tail = tail_line(pose)
    c.shape(stroke(tail, TAIL_ROOT_WIDTH, 0.028), TAIL, BASE)
    for t in sig["rings"]:
        i = int(t * (len(tail) - 1))
        d = tail[min(i + 1, len(tail) - 1)] - tail[max(i - 1, 0)]
        d = d / (np.linalg.norm(d) + 1e-9)
        c.mark(stroke(np.stack([tail[i] - 0.03 * d[::-1] * [1, -1], tail[i] + 0.03 * d[::-1] * [1, -1]]),
                       0.022, 0.022), PATTERN)
    # body
    for body in TRUNK:
        c.shape(ellipse(*body), BODY, BASE)
    c.mark(ellipse(0.0, 0.1, 0.25, 0.04), LIGHT)
    for x, from_back, length, tilt, bend, width, fork in sig[side]:
        y0, dy = (-0.15, 1.0) if from_back else (0.15, -1.0)
        t = np.linspace(0, 1, 8)[:, None]
        line = np.concatenate([x + tilt * t + bend * np.sin(np.pi * t), y0 + dy * (0.04 + length) * t], axis=1)
        c.mark(stroke(line, width, width * 0.25), PATTERN)
        if fork:
            offset = (t[3:] - t[3]) * (0.07 if bend >= 0 else -0.07)
            branch = line[3:] + np.concatenate([offset, np.zeros_like(offset)], axis=1)
            c.mark(stroke(branch, width * 0.6, width * 0.2), PATTERN)
    limbs.legs(c, pose, legs, far=False)
    # head (tilts about the neck)

    def head(points: np.ndarray) -> np.ndarray:
        return rotate(points, HEAD_PIVOT, pose.head)

    c.shape(head(EARS[1]), HEAD, BASE)
    c.shape(head(EARS[0]), HEAD, BASE)
    c.shape(head(ellipse(-0.33, -0.07, 0.085, 0.08)), HEAD, BASE)
    c.shape(head(ellipse(-0.41, -0.035, 0.05, 0.042)), HEAD, BASE)
    c.mark(head(ellipse(-0.41, -0.02, 0.05, 0.03)), LIGHT, "head")
    c.mark(head(ellipse(-0.31, -0.02, 0.05, 0.03)), LIGHT, "head")
    for dx, dy, tilt in sig["face"]:
        line = np.array([[-0.32 + dx, -0.13 + dy], [-0.32 + dx + 0.03 * math.sin(tilt), -0.1 + dy]])
        c.mark(head(stroke(line, 0.016, 0.006)), PATTERN, "head")
    c.shape(head(ellipse(-0.375, -0.085, 0.014, 0.01)), HEAD, DARK)
    c.shape(head(ellipse(*NOSE, 0.012, 0.01)), HEAD, DARK)


# ---- yak ----


def palette(sig: dict) -> np.ndarray:
    base = sig["colour"]
    return colours.palette({BASE: base, PATTERN: (28, 22, 20), LIGHT: (232, 224, 206), DARK: (20, 16, 14)})

