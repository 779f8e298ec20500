"""Yak-like: horn shape and coat patches per side, a face blaze, socks and a tail tuft."""

from __future__ import annotations

import math

import numpy as np

from reid_core.data.synthetic import colours, limbs
from reid_core.data.synthetic.canvas import BASE, BODY, DARK, FRONT_LEGS, HEAD, HORN, LIGHT, TAIL, Canvas
from reid_core.data.synthetic.geometry import Pose, bezier, ellipse, first_outside, rotate, stroke

EXTENT = (-0.48, -0.3, 0.4, 0.35)  # canonical bounding box (x0, y0, x1, y1)
CUES = "horn shape (one per side), coat patches per side, face blaze, socks, tail tuft"
LEGS = {"front": [(-0.16, 0.05), (-0.11, 0.05)], "hind": [(0.2, 0.05), (0.25, 0.05)],
        "length": 0.28, "ground": 0.33, "w0": 0.08, "w1": 0.065, "swing": 0.05, "knee": 0.03}
TRUNK = ((0.03, -0.02, 0.28, 0.16), (-0.13, -0.11, 0.14, 0.1), (0.2, -0.04, 0.11, 0.13))  # body ellipses
HEAD_PIVOT = (-0.27, -0.07)
EAR = (-0.3, -0.02, 0.045, 0.018, 0.3)  # the near ear; the far one is hidden behind the head
NOSE = (-0.455, 0.08)  # the front of the muzzle


def _side(rng: np.random.Generator) -> dict:
    patches = []
    for _ in range(rng.integers(1, 5)):
        cx, cy = rng.uniform(-0.22, 0.26), rng.uniform(-0.14, 0.1)
        blobs = [(float(cx + rng.normal(0, 0.035)), float(cy + rng.normal(0, 0.03)), float(rng.uniform(0.025, 0.075)),
                  float(rng.uniform(0.02, 0.055)), float(rng.uniform(0, np.pi))) for _ in range(rng.integers(2, 5))]
        patches.append(blobs)
    return {
        "patches": patches,
        "horn_length": float(rng.uniform(0.09, 0.22)),
        "horn_lean": float(rng.uniform(-0.7, 0.5)),  # initial direction relative to straight up
        "horn_curl": float(rng.uniform(-9.0, 9.0)),  # radians per unit length
        "horn_width": float(rng.uniform(0.028, 0.045)),
        "sock_front": int(rng.choice([0, 0, 3, 5])),  # white lower leg: points of the 8-point leg line
        "sock_hind": int(rng.choice([0, 0, 3, 5])),
    }


def signature(rng: np.random.Generator) -> dict:
    return {
        "colour": colours.jitter(rng, (58, 44, 36)),
        "left": _side(rng),
        "right": _side(rng),
        "blaze": float(rng.choice([0.0, 0.0, 0.5, 1.0])),  # white face: none / star / blaze
        "tuft": bool(rng.random() < 0.35),
        "fringe": rng.uniform(0.15, 0.23, 9).tolist(),
    }


def _horn(base: tuple[float, float], spec: dict) -> np.ndarray:
    n = 10
    ds = spec["horn_length"] / (n - 1)
    angle = -math.pi / 2 + spec["horn_lean"]
    points = [np.array(base)]
    for _ in range(n - 1):
        points.append(points[-1] + ds * np.array([math.cos(angle), math.sin(angle)]))
        angle += spec["horn_curl"] * ds
    return stroke(np.array(points), spec["horn_width"], 0.006)


TAIL_ROOT_WIDTH = 0.03  # the tail stroke's width where it leaves the body (its keypoint clears the body by it)


def tail_line(pose: Pose, n: int = 10) -> np.ndarray:
    return bezier((0.3, -0.1), (0.37, 0.0), (0.36 + 0.03 * pose.tail, 0.12), n)


def landmarks(sig: dict, side: str, pose: Pose) -> dict:
    """Canonical head, tail and body keypoints (the legs come from LEGS); the far ear is not drawn."""
    near_ear, nose = rotate(np.array([EAR[:2], NOSE]), HEAD_PIVOT, pose.head)
    return {"near_ear": near_ear, "far_ear": None, "nose": nose,
            "tail": first_outside(tail_line(pose, 60), TRUNK, margin=TAIL_ROOT_WIDTH), "center": np.array(TRUNK[0][:2])}


def draw(c: Canvas, sig: dict, side: str, pose: Pose) -> None:
    other = "right" if side == "left" else "left"
    near, far = sig[side], sig[other]
    legs = LEGS
    for part, line in limbs.legs(c, pose, legs, far=True):
        sock = far["sock_front" if part == FRONT_LEGS else "sock_hind"]
        if sock:
            c.shape(stroke(line[-sock:] + [0, 0.01], 0.066, 0.066), part, LIGHT, far=True)
    tail = tail_line(pose)
    c.shape(stroke(tail, TAIL_ROOT_WIDTH, 0.025), TAIL, BASE)
    c.shape(ellipse(0.36 + 0.03 * pose.tail, 0.15, 0.035, 0.065), TAIL, LIGHT if sig["tuft"] else BASE)
    for body in TRUNK:
        c.shape(ellipse(*body), BODY, BASE)
    xs = np.linspace(-0.25, 0.29, len(sig["fringe"]) * 2 + 1)
    ys = [0.03 if i % 2 == 0 else sig["fringe"][i // 2] for i in range(len(xs))]
    c.shape(np.array([[-0.25, 0.0], *zip(xs, ys, strict=True), [0.29, 0.0]]), BODY, BASE)
    for blobs in near["patches"]:
        for bx, by, rx, ry, a in blobs:
            c.mark(ellipse(bx, by, rx, ry, a), LIGHT)
    for part, line in limbs.legs(c, pose, legs, far=False):
        sock = near["sock_front" if part == FRONT_LEGS else "sock_hind"]
        if sock:
            c.shape(stroke(line[-sock:] + [0, 0.01], 0.08, 0.07), part, LIGHT)
        c.shape(ellipse(line[-1, 0], line[-1, 1] + 0.005, 0.04, 0.015), part, DARK)

    def head(points: np.ndarray) -> np.ndarray:
        return rotate(points, HEAD_PIVOT, pose.head)

    c.shape(head(_horn((-0.345, -0.085), far)), HEAD, HORN, far=True)
    c.shape(head(ellipse(-0.37, 0.0, 0.1, 0.075, 1.0)), HEAD, BASE)
    c.shape(head(ellipse(-0.43, 0.075, 0.05, 0.042)), HEAD, BASE)
    c.mark(head(ellipse(-0.435, 0.085, 0.04, 0.03)), LIGHT if sig["blaze"] else BASE, "head")
    if sig["blaze"]:
        c.mark(head(ellipse(-0.39, -0.03, 0.025 + 0.02 * sig["blaze"], 0.025 + 0.05 * sig["blaze"], 0.9)),
               LIGHT, "head")
    c.shape(head(ellipse(*EAR)), HEAD, BASE)
    c.shape(head(ellipse(-0.36, -0.03, 0.011, 0.011)), HEAD, DARK)
    c.shape(head(_horn((-0.33, -0.07), near)), HEAD, HORN)


# ---- elephant ----


def palette(sig: dict) -> np.ndarray:
    base = sig["colour"]
    return colours.palette({BASE: base, LIGHT: (226, 216, 198), HORN: (196, 186, 160), DARK: (22, 20, 18)})

