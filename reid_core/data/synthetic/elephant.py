"""Elephant-like: ear shape and notches, tusk length and curve (per side), pink spots on the trunk."""

from __future__ import annotations

import numpy as np

from reid_core.data.synthetic import colours, limbs
from reid_core.data.synthetic.canvas import BASE, BODY, DARK, EAR, EDGE, HEAD, IVORY, LIGHT, TAIL, Canvas
from reid_core.data.synthetic.geometry import Pose, bezier, ellipse, first_outside, rotate, stroke

EXTENT = (-0.5, -0.3, 0.42, 0.38)  # canonical bounding box (x0, y0, x1, y1)
CUES = "ear shape and notches, tusk length and curve (per side)"
LEGS = {"front": [(-0.14, 0.05), (-0.08, 0.05)], "hind": [(0.22, 0.05), (0.27, 0.05)],
        "length": 0.32, "ground": 0.37, "w0": 0.115, "w1": 0.1, "swing": 0.035, "knee": 0.0}
TRUNK = ((0.06, -0.05, 0.3, 0.2), (0.02, -0.12, 0.2, 0.15))  # body ellipses (the trunk of the body, not the nose)
HEAD_PIVOT = (-0.2, -0.1)
EAR_CENTRE = (-0.15, -0.06)  # the near ear's; the far ear is hidden behind the head


def _side(rng: np.random.Generator) -> dict:
    notches = [(float(rng.uniform(-0.9, 1.9)), float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.1, 0.22)))
               for _ in range(rng.integers(1, 6))]
    spots = [(float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.012, 0.03)), float(rng.uniform(0.01, 0.022)))
             for _ in range(rng.integers(0, 4))]
    return {
        "ear_size": float(rng.uniform(0.8, 1.25)),
        "ear_lobe": float(rng.uniform(0.0, 0.6)),  # how far the lower lobe hangs
        "spots": spots,  # depigmented (pink) spots along the trunk: (position, rx, ry)
        "ear_back": float(rng.uniform(-0.15, 0.25)),  # harmonic: squarish vs round back edge
        "ear_wave": float(rng.uniform(-0.08, 0.08)),
        "notches": notches,  # (angle on the free edge, depth, width)
        "tusk": float(rng.choice([0.0, 1.0, 1.0, 1.0, 1.0]) * rng.uniform(0.05, 0.17)),
        "tusk_curve": float(rng.uniform(-0.3, 0.5)),
    }


def signature(rng: np.random.Generator) -> dict:
    return {"colour": colours.jitter(rng, (128, 122, 117)), "left": _side(rng), "right": _side(rng)}


def _ear(spec: dict) -> np.ndarray:
    """Ear outline around its centre; angle 0 points to the tail, pi/2 down; notches cut the free edge."""
    phi = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    r = 1 + spec["ear_back"] * np.cos(2 * phi) * (np.cos(phi) > 0) + spec["ear_wave"] * np.sin(3 * phi)
    r = r * (1 + spec["ear_lobe"] * np.clip(np.sin(phi), 0, None) ** 3)
    for angle, depth, width in spec["notches"]:
        dist = np.abs((phi - angle + np.pi) % (2 * np.pi) - np.pi)
        r = r * (1 - depth * np.clip(1 - dist / width, 0, None))
    size = 0.12 * spec["ear_size"]
    return np.stack([-0.15 + size * r * np.cos(phi), -0.06 + 1.3 * size * r * np.sin(phi)], axis=1)


def _tusk(root: tuple[float, float], spec: dict) -> np.ndarray:
    length, curve = spec["tusk"], spec["tusk_curve"]
    x, y = root
    line = bezier((x, y), (x - 0.6 * length, y + 0.55 * length), (x - length, y + (0.25 - curve) * length), 8)
    return stroke(line, 0.028, 0.008)


TAIL_ROOT_WIDTH = 0.02  # the tail stroke's width where it leaves the body (its keypoint clears the body by it)


def tail_line(pose: Pose, n: int = 10) -> np.ndarray:
    return bezier((0.35, -0.1), (0.41, 0.0), (0.39 + 0.03 * pose.tail, 0.14), n)


def nose_line(pose: Pose) -> np.ndarray:
    """The trunk (the nose), root to tip, before the head's tilt."""
    curl = pose.tail
    return bezier((-0.37, -0.08), (-0.47, 0.1), (-0.43 - 0.04 * curl, 0.33 - 0.06 * max(curl, 0)), 12)


def landmarks(sig: dict, side: str, pose: Pose) -> dict:
    """Canonical head, tail and body keypoints (the legs come from LEGS): the nose is the trunk's tip,
    a little above its end so that it lies on the drawn trunk; the far ear is not drawn."""
    near_ear, nose = rotate(np.array([EAR_CENTRE, nose_line(pose)[-2]]), HEAD_PIVOT, pose.head)
    return {"near_ear": near_ear, "far_ear": None, "nose": nose,
            "tail": first_outside(tail_line(pose, 60), TRUNK, margin=TAIL_ROOT_WIDTH), "center": np.array(TRUNK[0][:2])}


def draw(c: Canvas, sig: dict, side: str, pose: Pose) -> None:
    other = "right" if side == "left" else "left"
    near, far = sig[side], sig[other]
    legs = LEGS
    limbs.legs(c, pose, legs, far=True)
    tail = tail_line(pose)
    c.shape(stroke(tail, TAIL_ROOT_WIDTH, 0.012), TAIL, BASE)
    c.shape(ellipse(0.39 + 0.03 * pose.tail, 0.155, 0.012, 0.03), TAIL, DARK)
    for body in TRUNK:
        c.shape(ellipse(*body), BODY, BASE)
    limbs.legs(c, pose, legs, far=False)

    def head(points: np.ndarray) -> np.ndarray:
        return rotate(points, HEAD_PIVOT, pose.head)

    if far["tusk"]:
        c.shape(head(_tusk((-0.35, 0.0), far)), HEAD, IVORY, far=True)
    c.shape(head(ellipse(-0.29, -0.12, 0.11, 0.14)), HEAD, BASE)
    c.shape(head(ellipse(-0.31, -0.22, 0.08, 0.06)), HEAD, BASE)
    trunk = nose_line(pose)
    c.shape(head(stroke(trunk, 0.075, 0.035)), HEAD, BASE)
    for t, rx, ry in near["spots"]:
        i = int(t * (len(trunk) - 1))
        c.mark(head(ellipse(trunk[i, 0], trunk[i, 1], rx, ry)), LIGHT, "head")
    if near["tusk"]:
        c.shape(head(_tusk((-0.36, 0.01), near)), HEAD, IVORY)
    c.shape(head(ellipse(-0.34, -0.15, 0.013, 0.011)), HEAD, DARK)
    c.shape(head(_ear(near)), HEAD, EAR, edge=EDGE)



def palette(sig: dict) -> np.ndarray:
    base = sig["colour"]
    return colours.palette({BASE: base, EAR: base * 0.84, EDGE: base * 0.55, IVORY: (236, 228, 200),
                            DARK: (30, 28, 26), LIGHT: (206, 168, 156)})

