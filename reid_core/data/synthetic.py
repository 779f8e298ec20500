"""Procedural, learnable re-identification data: tiger-, yak- and elephant-like animals on scene textures.

Every individual has a persistent signature derived from the seed and its id; each *side* has its own
(the flank pattern, horn, ear and tusk seen from the left differ from those seen from the right), so
``entity = f"{individual}_{side}"`` as in ATRW. Images vary in pose (rotation, scale, position, stride,
head and tail), side (the right side is the mirrored body), lighting (brightness, contrast and colour cast
on the animal; the scene is a fixed camera-trap view and keeps its exact pixels) and partial occlusion by
vegetation, which is cut out of the masks: the foreground and part masks are what is visible.

Backgrounds are a fixed set of procedural scenes (camera-trap sites; the same scene is the same pixels).
In ``train`` an individual appears mostly in its own two or three "home" scenes, in ``val``/``test`` an
individual's images get distinct random scenes, so background carries identity information in training
and none at test time: a model that learns the background fails, one trained on masked images does not
(AER's Table 1 in miniature).

Layout: ``DIR/<species>/{images,masks,parts}/<individual>_<index>.png`` and ``DIR/manifest.parquet``.
Images are lossless PNG: background pixels equal the scene exactly where the mask is 0 (JPEG would blur
that contract and make masks disagree with the pixels at edges), at ~2 ms of encoding per 128 px image
(compress level 1; ~34 kB, against ~10 kB and 0.2 ms for JPEG at quality 95).

    python -m reid_core.data.synthetic --out DIR --species tiger,yak,elephant --individuals 40 \
        --images-per-individual 12 --size 128 --seed 0
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageDraw

from reid_core.data import files as rio
from reid_core.data import manifest

PART_NAMES = ("background", "head", "body", "front_legs", "hind_legs", "tail")
HEAD, BODY, FRONT_LEGS, HIND_LEGS, TAIL = 1, 2, 3, 4, 5

DEFAULT_SPECIES = ("tiger", "yak", "elephant")
DEFAULT_SCENES = 16
DEFAULT_CAMERAS = 6
DEFAULT_OCCLUSION = 0.3  # probability that an image has a vegetation occluder
HOME_FRACTION = 0.85  # share of a training individual's images taken in its home scenes
SPLIT_DISJOINT = (("train", "val"), ("train", "test"), ("val", "test"))

# Tones: what colour a pixel of the animal gets (looked up in the individual's palette). FAR marks the
# far-side limbs and horn/tusk, drawn darker.
BASE, PATTERN, LIGHT, IVORY, HORN, EAR, EDGE, DARK = 1, 2, 3, 4, 5, 6, 7, 8
FAR = 16
FAR_DIM = 0.72

# Seed-sequence tags: each random stream is keyed by (seed, species, individual, image, tag).
_SIGNATURE, _IMAGE, _PLAN, _SPLIT, _SCENE, _FRAME, _OCCLUDER = 1, 2, 3, 4, 5, 6, 7


def _species_code(name: str) -> int:
    return zlib.crc32(name.encode())


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


# --------------------------------------------------------------------------------------------------
# Geometry in the canonical frame: the animal faces left (its left flank is visible), x to the tail,
# y down, about one unit from nose to tail tip, body centre at the origin.


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _bezier(p0, p1, p2, n: int = 12) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _stroke(line: np.ndarray, w0: float, w1: float) -> np.ndarray:
    """A polygon around a polyline whose width tapers from ``w0`` to ``w1``."""
    d = np.empty_like(line)
    d[1:-1] = line[2:] - line[:-2]
    d[0], d[-1] = line[1] - line[0], line[-1] - line[-2]
    d /= np.sqrt((d * d).sum(axis=1, keepdims=True)) + 1e-9
    normal = d[:, ::-1] * (-1.0, 1.0)
    half = (w0 + (w1 - w0) * np.arange(len(line)) / max(len(line) - 1, 1))[:, None] / 2
    return np.concatenate([line + normal * half, (line - normal * half)[::-1]])


def _rotate(points: np.ndarray, pivot, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    p = points - np.asarray(pivot)
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], axis=1) + np.asarray(pivot)


@dataclass(frozen=True)
class Pose:
    """Per-image placement: canonical point p -> centre + scale * R(angle) @ diag(-1 if mirror, 1) @ p."""

    angle: float
    scale: float  # pixels per canonical unit
    cx: float
    cy: float
    mirror: bool
    stride: float  # -1..1, leg swing
    head: float  # head tilt (radians)
    tail: float  # -1..1, tail swing

    def matrix(self) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        flip = np.diag([-1.0 if self.mirror else 1.0, 1.0])
        return self.scale * np.array([[c, -s], [s, c]]) @ flip


class _Canvas:
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


# --------------------------------------------------------------------------------------------------
# Species presets: a signature (per individual, with a sub-signature per side) and a drawing.


def _jitter_colour(rng: np.random.Generator, rgb: Sequence[int], sd: float = 3.0) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=float) * rng.uniform(0.97, 1.03) + rng.normal(0, sd, 3), 0, 255)


def _palette(entries: dict[int, Sequence[float]]) -> np.ndarray:
    palette = np.zeros((2 * FAR, 3), np.float32)
    for tone, rgb in entries.items():
        palette[tone] = rgb
        palette[tone + FAR] = np.asarray(rgb) * FAR_DIM
    return palette


def _legs(c: _Canvas, pose: Pose, spec: dict, far: bool) -> list[tuple[int, np.ndarray]]:
    """Four legs from ``spec`` = {front: [(x, y_hip)...near/far], hind: ..., length, w0, w1, knee}."""
    drawn = []
    k = 1 if far else 0
    for part, key, sign in ((FRONT_LEGS, "front", 1.0), (HIND_LEGS, "hind", -1.0)):
        x, y = spec[key][k]
        swing = (sign if far else -sign) * pose.stride * spec["swing"]
        knee = spec["knee"] if key == "hind" else 0.0
        line = _bezier((x, y), (x + knee + swing * 0.3, y + spec["length"] * 0.5), (x + swing, spec["ground"]), 8)
        c.shape(_stroke(line, spec["w0"], spec["w1"]), part, BASE, far=far)
        drawn.append((part, line))
    return drawn


# ---- tiger ----


def _tiger_flank(rng: np.random.Generator) -> list[tuple]:
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


def _tiger_signature(rng: np.random.Generator) -> dict:
    return {
        "colour": _jitter_colour(rng, (214, 118, 42)),
        "left": _tiger_flank(rng),
        "right": _tiger_flank(rng),
        "face": [(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.06, 0.0)), float(rng.uniform(-0.8, 0.8)))
                 for _ in range(rng.integers(2, 5))],
        "rings": np.sort(rng.uniform(0.25, 0.95, rng.integers(3, 6))).tolist(),
    }


def _tiger_draw(c: _Canvas, sig: dict, side: str, pose: Pose) -> None:
    legs = {"front": [(-0.17, 0.02), (-0.12, 0.02)], "hind": [(0.21, 0.02), (0.25, 0.02)],
            "length": 0.3, "ground": 0.34, "w0": 0.07, "w1": 0.05, "swing": 0.07, "knee": 0.05}
    _legs(c, pose, legs, far=True)
    # tail
    swing = pose.tail
    tail = _bezier((0.29, -0.05), (0.47, 0.06 + 0.06 * swing), (0.53, -0.06 - 0.12 * swing), 14)
    c.shape(_stroke(tail, 0.04, 0.028), TAIL, BASE)
    for t in sig["rings"]:
        i = int(t * (len(tail) - 1))
        d = tail[min(i + 1, len(tail) - 1)] - tail[max(i - 1, 0)]
        d = d / (np.linalg.norm(d) + 1e-9)
        c.mark(_stroke(np.stack([tail[i] - 0.03 * d[::-1] * [1, -1], tail[i] + 0.03 * d[::-1] * [1, -1]]),
                       0.022, 0.022), PATTERN)
    # body
    c.shape(_ellipse(0.04, 0.0, 0.27, 0.11), BODY, BASE)
    c.shape(_ellipse(-0.16, -0.005, 0.13, 0.12), BODY, BASE)
    c.shape(_ellipse(0.2, -0.01, 0.11, 0.115), BODY, BASE)
    c.mark(_ellipse(0.0, 0.1, 0.25, 0.04), LIGHT)
    for x, from_back, length, tilt, bend, width, fork in sig[side]:
        y0, dy = (-0.15, 1.0) if from_back else (0.15, -1.0)
        t = np.linspace(0, 1, 8)[:, None]
        line = np.concatenate([x + tilt * t + bend * np.sin(np.pi * t), y0 + dy * (0.04 + length) * t], axis=1)
        c.mark(_stroke(line, width, width * 0.25), PATTERN)
        if fork:
            offset = (t[3:] - t[3]) * (0.07 if bend >= 0 else -0.07)
            branch = line[3:] + np.concatenate([offset, np.zeros_like(offset)], axis=1)
            c.mark(_stroke(branch, width * 0.6, width * 0.2), PATTERN)
    _legs(c, pose, legs, far=False)
    # head (tilts about the neck)
    pivot = (-0.26, -0.05)

    def head(points: np.ndarray) -> np.ndarray:
        return _rotate(points, pivot, pose.head)

    c.shape(head(np.array([[-0.39, -0.12], [-0.37, -0.2], [-0.33, -0.13]])), HEAD, BASE)
    c.shape(head(np.array([[-0.31, -0.13], [-0.28, -0.2], [-0.25, -0.11]])), HEAD, BASE)
    c.shape(head(_ellipse(-0.33, -0.07, 0.085, 0.08)), HEAD, BASE)
    c.shape(head(_ellipse(-0.41, -0.035, 0.05, 0.042)), HEAD, BASE)
    c.mark(head(_ellipse(-0.41, -0.02, 0.05, 0.03)), LIGHT, "head")
    c.mark(head(_ellipse(-0.31, -0.02, 0.05, 0.03)), LIGHT, "head")
    for dx, dy, tilt in sig["face"]:
        line = np.array([[-0.32 + dx, -0.13 + dy], [-0.32 + dx + 0.03 * math.sin(tilt), -0.1 + dy]])
        c.mark(head(_stroke(line, 0.016, 0.006)), PATTERN, "head")
    c.shape(head(_ellipse(-0.375, -0.085, 0.014, 0.01)), HEAD, DARK)
    c.shape(head(_ellipse(-0.455, -0.045, 0.012, 0.01)), HEAD, DARK)


# ---- yak ----


def _yak_side(rng: np.random.Generator) -> dict:
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


def _yak_signature(rng: np.random.Generator) -> dict:
    return {
        "colour": _jitter_colour(rng, (58, 44, 36)),
        "left": _yak_side(rng),
        "right": _yak_side(rng),
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
    return _stroke(np.array(points), spec["horn_width"], 0.006)


def _yak_draw(c: _Canvas, sig: dict, side: str, pose: Pose) -> None:
    other = "right" if side == "left" else "left"
    near, far = sig[side], sig[other]
    legs = {"front": [(-0.16, 0.05), (-0.11, 0.05)], "hind": [(0.2, 0.05), (0.25, 0.05)],
            "length": 0.28, "ground": 0.33, "w0": 0.08, "w1": 0.065, "swing": 0.05, "knee": 0.03}
    for part, line in _legs(c, pose, legs, far=True):
        sock = far["sock_front" if part == FRONT_LEGS else "sock_hind"]
        if sock:
            c.shape(_stroke(line[-sock:] + [0, 0.01], 0.066, 0.066), part, LIGHT, far=True)
    tail = _bezier((0.3, -0.1), (0.37, 0.0), (0.36 + 0.03 * pose.tail, 0.12), 10)
    c.shape(_stroke(tail, 0.03, 0.025), TAIL, BASE)
    c.shape(_ellipse(0.36 + 0.03 * pose.tail, 0.15, 0.035, 0.065), TAIL, LIGHT if sig["tuft"] else BASE)
    c.shape(_ellipse(0.03, -0.02, 0.28, 0.16), BODY, BASE)
    c.shape(_ellipse(-0.13, -0.11, 0.14, 0.1), BODY, BASE)
    c.shape(_ellipse(0.2, -0.04, 0.11, 0.13), BODY, BASE)
    xs = np.linspace(-0.25, 0.29, len(sig["fringe"]) * 2 + 1)
    ys = [0.03 if i % 2 == 0 else sig["fringe"][i // 2] for i in range(len(xs))]
    c.shape(np.array([[-0.25, 0.0], *zip(xs, ys, strict=True), [0.29, 0.0]]), BODY, BASE)
    for blobs in near["patches"]:
        for bx, by, rx, ry, a in blobs:
            c.mark(_ellipse(bx, by, rx, ry, a), LIGHT)
    for part, line in _legs(c, pose, legs, far=False):
        sock = near["sock_front" if part == FRONT_LEGS else "sock_hind"]
        if sock:
            c.shape(_stroke(line[-sock:] + [0, 0.01], 0.08, 0.07), part, LIGHT)
        c.shape(_ellipse(line[-1, 0], line[-1, 1] + 0.005, 0.04, 0.015), part, DARK)
    pivot = (-0.27, -0.07)

    def head(points: np.ndarray) -> np.ndarray:
        return _rotate(points, pivot, pose.head)

    c.shape(head(_horn((-0.345, -0.085), far)), HEAD, HORN, far=True)
    c.shape(head(_ellipse(-0.37, 0.0, 0.1, 0.075, 1.0)), HEAD, BASE)
    c.shape(head(_ellipse(-0.43, 0.075, 0.05, 0.042)), HEAD, BASE)
    c.mark(head(_ellipse(-0.435, 0.085, 0.04, 0.03)), LIGHT if sig["blaze"] else BASE, "head")
    if sig["blaze"]:
        c.mark(head(_ellipse(-0.39, -0.03, 0.025 + 0.02 * sig["blaze"], 0.025 + 0.05 * sig["blaze"], 0.9)),
               LIGHT, "head")
    c.shape(head(_ellipse(-0.3, -0.02, 0.045, 0.018, 0.3)), HEAD, BASE)
    c.shape(head(_ellipse(-0.36, -0.03, 0.011, 0.011)), HEAD, DARK)
    c.shape(head(_horn((-0.33, -0.07), near)), HEAD, HORN)


# ---- elephant ----


def _elephant_side(rng: np.random.Generator) -> dict:
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


def _elephant_signature(rng: np.random.Generator) -> dict:
    return {"colour": _jitter_colour(rng, (128, 122, 117)), "left": _elephant_side(rng), "right": _elephant_side(rng)}


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
    line = _bezier((x, y), (x - 0.6 * length, y + 0.55 * length), (x - length, y + (0.25 - curve) * length), 8)
    return _stroke(line, 0.028, 0.008)


def _elephant_draw(c: _Canvas, sig: dict, side: str, pose: Pose) -> None:
    other = "right" if side == "left" else "left"
    near, far = sig[side], sig[other]
    legs = {"front": [(-0.14, 0.05), (-0.08, 0.05)], "hind": [(0.22, 0.05), (0.27, 0.05)],
            "length": 0.32, "ground": 0.37, "w0": 0.115, "w1": 0.1, "swing": 0.035, "knee": 0.0}
    _legs(c, pose, legs, far=True)
    tail = _bezier((0.35, -0.1), (0.41, 0.0), (0.39 + 0.03 * pose.tail, 0.14), 10)
    c.shape(_stroke(tail, 0.02, 0.012), TAIL, BASE)
    c.shape(_ellipse(0.39 + 0.03 * pose.tail, 0.155, 0.012, 0.03), TAIL, DARK)
    c.shape(_ellipse(0.06, -0.05, 0.3, 0.2), BODY, BASE)
    c.shape(_ellipse(0.02, -0.12, 0.2, 0.15), BODY, BASE)
    _legs(c, pose, legs, far=False)
    pivot = (-0.2, -0.1)

    def head(points: np.ndarray) -> np.ndarray:
        return _rotate(points, pivot, pose.head)

    if far["tusk"]:
        c.shape(head(_tusk((-0.35, 0.0), far)), HEAD, IVORY, far=True)
    c.shape(head(_ellipse(-0.29, -0.12, 0.11, 0.14)), HEAD, BASE)
    c.shape(head(_ellipse(-0.31, -0.22, 0.08, 0.06)), HEAD, BASE)
    curl = pose.tail
    trunk = _bezier((-0.37, -0.08), (-0.47, 0.1), (-0.43 - 0.04 * curl, 0.33 - 0.06 * max(curl, 0)), 12)
    c.shape(head(_stroke(trunk, 0.075, 0.035)), HEAD, BASE)
    for t, rx, ry in near["spots"]:
        i = int(t * (len(trunk) - 1))
        c.mark(head(_ellipse(trunk[i, 0], trunk[i, 1], rx, ry)), LIGHT, "head")
    if near["tusk"]:
        c.shape(head(_tusk((-0.36, 0.01), near)), HEAD, IVORY)
    c.shape(head(_ellipse(-0.34, -0.15, 0.013, 0.011)), HEAD, DARK)
    c.shape(head(_ear(near)), HEAD, EAR, edge=EDGE)


@dataclass(frozen=True)
class SpeciesPreset:
    """A procedural species: how to draw an individual's signature and an image of it."""

    name: str
    signature: Callable[[np.random.Generator], dict]
    draw: Callable[[_Canvas, dict, str, Pose], None]
    palette: Callable[[dict], np.ndarray]
    extent: tuple[float, float, float, float]  # canonical bounding box (x0, y0, x1, y1)
    cues: str


def _tiger_palette(sig: dict) -> np.ndarray:
    base = sig["colour"]
    return _palette({BASE: base, PATTERN: (28, 22, 20), LIGHT: (232, 224, 206), DARK: (20, 16, 14)})


def _yak_palette(sig: dict) -> np.ndarray:
    base = sig["colour"]
    return _palette({BASE: base, LIGHT: (226, 216, 198), HORN: (196, 186, 160), DARK: (22, 20, 18)})


def _elephant_palette(sig: dict) -> np.ndarray:
    base = sig["colour"]
    return _palette({BASE: base, EAR: base * 0.84, EDGE: base * 0.55, IVORY: (236, 228, 200), DARK: (30, 28, 26),
                     LIGHT: (206, 168, 156)})


SPECIES: dict[str, SpeciesPreset] = {
    "tiger": SpeciesPreset("tiger", _tiger_signature, _tiger_draw, _tiger_palette, (-0.47, -0.22, 0.56, 0.35),
                           "flank stripe pattern (one per side), face marks, tail rings"),
    "yak": SpeciesPreset("yak", _yak_signature, _yak_draw, _yak_palette, (-0.48, -0.3, 0.4, 0.35),
                         "horn shape (one per side), coat patches per side, face blaze, socks, tail tuft"),
    "elephant": SpeciesPreset("elephant", _elephant_signature, _elephant_draw, _elephant_palette,
                              (-0.5, -0.3, 0.42, 0.38), "ear shape and notches, tusk length and curve (per side)"),
}


def _preset(species: str) -> SpeciesPreset:
    if species not in SPECIES:
        raise ValueError(f"unknown synthetic species {species!r}: use one of {', '.join(SPECIES)}")
    return SPECIES[species]


@lru_cache(maxsize=4096)
def individual_signature(species: str, individual: int, seed: int) -> dict:
    """The persistent signature of one individual (treat as read-only)."""
    return _preset(species).signature(_rng(seed, _species_code(species), individual, 0, _SIGNATURE))


# --------------------------------------------------------------------------------------------------
# Scenes: fixed procedural backgrounds, generated once per (seed, count, size).


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    grid = Image.fromarray(rng.random((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(grid.resize((size, size), Image.BICUBIC))


def _colour(rng: np.random.Generator, rgb: Sequence[int], sd: float = 16.0) -> tuple[int, int, int]:
    """``rgb`` varied mostly in brightness (sd/150 relative) and a little in hue (sd/3 per channel)."""
    varied = np.asarray(rgb) * rng.normal(1.0, sd / 150) + rng.normal(0, sd / 3, 3)
    return tuple(int(v) for v in np.clip(varied, 0, 255))


def _blend(a, b, t: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=float) * (1 - t[..., None]) + np.asarray(b, dtype=float) * t[..., None]


def _scene(kind: str, rng: np.random.Generator, s: int) -> np.ndarray:
    ys = np.linspace(0, 1, s)[:, None] * np.ones((1, s))
    u = s / 128
    if kind in ("grass", "reeds"):
        low, high = (_colour(rng, (70, 110, 40)), _colour(rng, (150, 160, 70))) if kind == "grass" else \
            (_colour(rng, (120, 110, 60)), _colour(rng, (190, 175, 110)))
        img = Image.fromarray(_blend(high, low, ys).astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(int(s * s / (14 if kind == "grass" else 30))):
            x, y = rng.uniform(0, s), rng.uniform(0, s * 1.1)
            length = rng.uniform(3, 12 if kind == "grass" else 30) * u
            lean = rng.normal(0, 0.3 if kind == "grass" else 0.15) * length
            d.line([(x, y), (x + lean, y - length)], fill=_colour(rng, low if rng.random() < 0.5 else high, 25),
                   width=max(1, int(round(u * rng.uniform(1, 2.5)))))
        return np.asarray(img)
    if kind == "forest":
        base = _blend(_colour(rng, (30, 50, 30)), _colour(rng, (70, 90, 50)), _smooth_noise(rng, s, 5))
        img = Image.fromarray(base.astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(rng.integers(5, 10)):
            x, w = rng.uniform(0, s), rng.uniform(3, 14) * u
            d.polygon([(x, 0), (x + w, 0), (x + w + rng.normal(0, 4) * u, s), (x + rng.normal(0, 4) * u, s)],
                      fill=_colour(rng, (90, 70, 55), 25))
        for _ in range(rng.integers(6, 14)):
            x, y, r = rng.uniform(0, s), rng.uniform(0, s * 0.5), rng.uniform(5, 18) * u
            d.ellipse([x - r, y - r * 0.7, x + r, y + r * 0.7], fill=_colour(rng, (50, 90, 40), 20))
        return np.asarray(img)
    if kind == "savanna":
        horizon = rng.uniform(0.25, 0.45)
        sky = _blend(_colour(rng, (150, 190, 225)), _colour(rng, (215, 225, 230)), np.clip(ys / horizon, 0, 1))
        ground = _blend(_colour(rng, (200, 170, 100)), _colour(rng, (150, 120, 70)),
                        np.clip((ys - horizon) / (1 - horizon), 0, 1))
        img = Image.fromarray(np.where(ys[..., None] < horizon, sky, ground).astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(rng.integers(2, 5)):
            x, r = rng.uniform(0, s), rng.uniform(6, 14) * u
            y = horizon * s
            d.line([(x, y), (x, y - r)], fill=(70, 55, 40), width=max(1, int(2 * u)))
            d.ellipse([x - 1.6 * r, y - r * 1.5, x + 1.6 * r, y - r * 0.9], fill=_colour(rng, (70, 90, 50)))
        for _ in range(int(s * 1.5)):
            x, y = rng.uniform(0, s), rng.uniform(horizon * s, s)
            d.line([(x, y), (x + rng.uniform(2, 8) * u, y)], fill=_colour(rng, (170, 140, 85), 25))
        return np.asarray(img)
    if kind == "rocks":
        img = Image.fromarray(np.full((s, s, 3), _colour(rng, (120, 110, 100)), np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(rng.integers(25, 45)):
            x, y, r = rng.uniform(-10, s + 10), rng.uniform(-10, s + 10), rng.uniform(5, 22) * u
            d.ellipse([x - r, y - r * 0.7, x + r, y + r * 0.7], fill=_colour(rng, (135, 128, 118), 28))
        return np.asarray(img)
    if kind == "mottled":
        t = _smooth_noise(rng, s, int(rng.integers(4, 9)))
        return _blend(_colour(rng, (60, 80, 45), 30), _colour(rng, (150, 140, 90), 30), t).astype(np.uint8)
    if kind == "snow":
        t = 0.5 + 0.5 * np.sin(ys * rng.uniform(20, 40) + 3 * _smooth_noise(rng, s, 4))
        return _blend(_colour(rng, (200, 210, 225), 12), _colour(rng, (235, 238, 245), 8), t).astype(np.uint8)
    # "litter": leaf litter on dirt
    img = Image.fromarray(np.full((s, s, 3), _colour(rng, (110, 80, 55)), np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(s * s / 40)):
        x, y, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(1, 4) * u
        d.ellipse([x - r, y - r * 0.5, x + r, y + r * 0.5], fill=_colour(rng, (150, 100, 50), 35))
    return np.asarray(img)


SCENE_KINDS = ("grass", "forest", "savanna", "rocks", "mottled", "reeds", "snow", "litter")


@lru_cache(maxsize=8)
def _scenes_cached(seed: int, count: int, size: int) -> np.ndarray:
    out = np.empty((count, size, size, 3), np.uint8)
    for k in range(count):
        rng = _rng(seed, 0, k, 0, _SCENE)
        img = _scene(SCENE_KINDS[k % len(SCENE_KINDS)], rng, size).astype(float)
        out[k] = np.clip(img + rng.normal(0, 3.0, img.shape), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def scene_textures(seed: int, count: int = DEFAULT_SCENES, size: int = 128) -> np.ndarray:
    """The ``count`` background scenes of a dataset, shape (count, size, size, 3) uint8 (read-only)."""
    return _scenes_cached(int(seed), int(count), int(size))


# --------------------------------------------------------------------------------------------------
# One image.


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # (S, S, 3) uint8
    parts: np.ndarray  # (S, S) uint8 part labels, 0 where background or occluded
    occluder: np.ndarray  # (S, S) bool, the vegetation drawn in front

    @property
    def mask(self) -> np.ndarray:
        return self.parts > 0

    @property
    def occluded(self) -> bool:
        return bool(self.occluder.any())


def _pose(rng: np.random.Generator, preset: SpeciesPreset, size: int, mirror: bool) -> Pose:
    angle = rng.uniform(-0.2, 0.2)
    scale = rng.uniform(0.6, 0.86) * size
    x0, y0, x1, y1 = preset.extent
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    probe = Pose(angle, scale, 0.0, 0.0, mirror, 0.0, 0.0, 0.0)
    px = corners @ probe.matrix().T
    lo, hi = -px.min(axis=0) - 0.02 * size, size - px.max(axis=0) + 0.02 * size
    centre = [rng.uniform(a, b) if b > a else (a + b) / 2 for a, b in zip(lo, hi, strict=True)]
    return Pose(angle, scale, centre[0], centre[1], mirror, rng.uniform(-1, 1), rng.uniform(-0.15, 0.2),
                rng.uniform(-1, 1))


def _occluder(rng: np.random.Generator, size: int, box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Vegetation in front of the animal: a grass tuft, a trunk/branch, or a bush."""
    x0, y0, x1, y1 = box
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    u = size / 128
    colour = Image.new("RGB", (size, size))
    mask = Image.new("L", (size, size))
    dc, dm = ImageDraw.Draw(colour), ImageDraw.Draw(mask)
    kind = rng.integers(3)
    if kind == 0:  # grass tuft rising from the ground
        cx, ground = rng.uniform(x0 + 0.1 * w, x1 - 0.1 * w), y1 + rng.uniform(0.0, 0.05) * size
        green = (rng.uniform(50, 110), rng.uniform(100, 160), rng.uniform(30, 60))
        for _ in range(rng.integers(6, 12)):
            x = cx + rng.normal(0, 0.08 * w)
            top = (x + rng.normal(0, 0.1 * h), ground - rng.uniform(0.35, 0.8) * h)
            line = _bezier((x, ground), (x, (ground + top[1]) / 2), top, 6)
            poly = _stroke(line, rng.uniform(2.0, 4.0) * u, 0.5).ravel().tolist()
            fill = _colour(rng, green, 15)
            dc.polygon(poly, fill=fill)
            dm.polygon(poly, fill=255)
    elif kind == 1:  # a trunk or branch crossing the frame
        cx, lean = rng.uniform(x0 + 0.15 * w, x1 - 0.15 * w), rng.uniform(-0.45, 0.45)
        width = rng.uniform(0.05, 0.1) * size
        top, bottom = (cx - lean * size / 2, -2.0), (cx + lean * size / 2, size + 2.0)
        poly = _stroke(np.array([top, bottom], dtype=float), width, width * rng.uniform(0.8, 1.3)).ravel().tolist()
        dc.polygon(poly, fill=_colour(rng, (95, 78, 60), 20))
        dm.polygon(poly, fill=255)
    else:  # a bush at the front or the back end
        cx = x0 + rng.choice([0.15, 0.85]) * w + rng.normal(0, 0.05 * w)
        cy = y1 - rng.uniform(0.0, 0.3) * h
        for _ in range(rng.integers(4, 8)):
            bx, by, r = cx + rng.normal(0, 0.07 * size), cy + rng.normal(0, 0.05 * size), rng.uniform(0.05, 0.11) * size
            box_ = [bx - r, by - r * 0.8, bx + r, by + r * 0.8]
            dc.ellipse(box_, fill=_colour(rng, (55, 105, 40), 18))
            dm.ellipse(box_, fill=255)
    rgb = np.asarray(colour, np.float32) * rng.uniform(0.85, 1.15, (size, size, 1)).astype(np.float32)
    return np.asarray(mask) > 0, np.clip(rgb, 0, 255).astype(np.uint8)


def render_image(
    species: str,
    individual: int,
    index: int,
    side: str,
    background: np.ndarray,
    *,
    seed: int,
    occlusion: float = DEFAULT_OCCLUSION,
) -> Rendered:
    """Draw image ``index`` of ``individual`` on ``background`` (S x S x 3 uint8), seeded by
    (seed, species, individual, index). The occluder has its own random stream and ``occlusion`` only
    decides whether it is applied, so the same image with ``occlusion=0`` is its unoccluded version."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    preset = _preset(species)
    size = background.shape[0]
    sig = individual_signature(species, individual, seed)
    rng = _rng(seed, _species_code(species), individual, index, _IMAGE)
    pose = _pose(rng, preset, size, mirror=side == "right")
    canvas = _Canvas(size, pose)
    preset.draw(canvas, sig, side, pose)
    labels, tones = canvas.arrays()
    fg = labels > 0

    # colour of the animal's pixels: palette, shading along the body's up axis, lighting, fur noise
    ys, xs = np.nonzero(fg)
    rgb = preset.palette(sig)[tones[ys, xs]]
    up_x, up_y = math.sin(pose.angle), -math.cos(pose.angle)
    height = ((xs + 0.5 - pose.cx) * up_x + (ys + 0.5 - pose.cy) * up_y) / pose.scale
    rgb *= np.clip(1.0 + 0.6 * height, 0.8, 1.2).astype(np.float32)[:, None]
    brightness, contrast = rng.uniform(0.7, 1.25), rng.uniform(0.75, 1.2)
    cast = rng.uniform(0.93, 1.07, 3)
    mean = rgb.mean(axis=0) if len(rgb) else np.zeros(3, np.float32)
    rgb = ((rgb - mean) * np.float32(contrast) + mean) * (brightness * cast).astype(np.float32)
    rgb += rng.standard_normal((len(rgb), 1), dtype=np.float32) * np.float32(5.0)
    image = background.copy()
    image[ys, xs] = np.clip(rgb, 0, 255).astype(np.uint8)

    # occluder: its own random stream, so ``occlusion`` changes nothing else about the image
    occ = np.zeros_like(fg)
    if rng.random() < occlusion and len(ys):
        box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        drawn, occ_rgb = _occluder(_rng(seed, _species_code(species), individual, index, _OCCLUDER), size, box)
        if (fg & ~drawn).sum() >= 0.5 * fg.sum():  # never hide more than half of the animal
            occ = drawn
            image = np.where(occ[..., None], occ_rgb, image)
            labels = np.where(occ, 0, labels).astype(np.uint8)
    return Rendered(image=image, parts=labels, occluder=occ)


# --------------------------------------------------------------------------------------------------
# The dataset: plan (splits, sides, scenes, roles, cameras, frames) in the parent, render in workers.


def _split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} individuals leave none for training with val_fraction={val_fraction} and "
                         f"test_fraction={test_fraction}: use more individuals or smaller fractions")
    return n_train, n_val, n_test


def _assign_roles_and_cameras(rng: np.random.Generator, idx: list[int], cameras: list[int], roles: list,
                              n_cameras: int) -> None:
    """Mark ~1/4 of an entity's images as queries (>= 1 when it has two or more) and make sure every
    query has a same-entity gallery image from another camera."""
    n = len(idx)
    if n < 2:
        for i in idx:
            roles[i] = "gallery"
        return
    queries = set(rng.choice(idx, size=max(1, round(n / 4)), replace=False).tolist())
    gallery = [i for i in idx if i not in queries]
    for i in idx:
        roles[i] = "query" if i in queries else "gallery"
    query_cams = {cameras[q] for q in queries}
    if len(gallery) == 1:
        if cameras[gallery[0]] in query_cams:
            free = [c for c in range(n_cameras) if c not in query_cams]
            cameras[gallery[0]] = int(rng.choice(free))
        return
    gallery_cams = {cameras[g] for g in gallery}
    if len(gallery_cams) == 1 and gallery_cams <= query_cams:
        (cam,) = gallery_cams
        cameras[gallery[int(rng.integers(len(gallery)))]] = int((cam + rng.integers(1, n_cameras)) % n_cameras)


def plan(
    species: Sequence[str],
    individuals: int,
    images_per_individual: int,
    *,
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.3,
    scenes: int = DEFAULT_SCENES,
    cameras: int = DEFAULT_CAMERAS,
) -> pl.DataFrame:
    """Who is photographed where: one row per image with the labels but no files."""
    if cameras < 2:
        raise ValueError("cameras must be >= 2 so that every query has a gallery image from another camera")
    if scenes < 3:
        raise ValueError("scenes must be >= 3 (home scenes in train, distinct scenes in val/test)")
    rows: dict[str, list] = {k: [] for k in ("species", "index", "image", "side", "split", "role", "camera",
                                              "frame", "scene")}
    for name in species:
        _preset(name)
        code = _species_code(name)
        n_train, n_val, _ = _split_counts(individuals, val_fraction, test_fraction)
        order = _rng(seed, code, 0, 0, _SPLIT).permutation(individuals)
        split_of = {int(i): ("train" if r < n_train else "val" if r < n_train + n_val else "test")
                    for r, i in enumerate(order)}
        frame_rng = _rng(seed, code, 0, 0, _FRAME)
        next_frame = [int(frame_rng.integers(0, 1000)) for _ in range(cameras)]
        for ind in range(individuals):
            rng = _rng(seed, code, ind, 0, _PLAN)
            m = images_per_individual
            sides = np.array(["left"] * (m // 2 + int(m % 2 and rng.random() < 0.5)))
            sides = rng.permutation(np.concatenate([sides, np.array(["right"] * (m - len(sides)))])).tolist()
            split = split_of[ind]
            if split == "train":
                home = rng.choice(scenes, size=int(rng.integers(2, 4)), replace=False)
                scene = [int(rng.choice(home)) if rng.random() < HOME_FRACTION else int(rng.integers(scenes))
                         for _ in range(m)]
            else:  # distinct scenes per individual: the background says nothing about identity
                scene = np.concatenate([rng.permutation(scenes) for _ in range(-(-m // scenes))])[:m].tolist()
            cams = rng.integers(0, cameras, m).tolist()
            roles: list = [None] * m
            if split != "train":
                for s in ("left", "right"):
                    _assign_roles_and_cameras(rng, [i for i in range(m) if sides[i] == s], cams, roles, cameras)
            for i in range(m):
                rows["species"].append(name)
                rows["index"].append(ind)
                rows["image"].append(i)
                rows["side"].append(sides[i])
                rows["split"].append(split)
                rows["role"].append(roles[i])
                rows["camera"].append(f"cam{cams[i]}")
                rows["frame"].append(next_frame[cams[i]])
                next_frame[cams[i]] += int(frame_rng.integers(1, 40))
                rows["scene"].append(scene[i])
    return pl.DataFrame(rows, schema={"species": pl.String, "index": pl.Int64, "image": pl.Int64,
                                      "side": pl.String, "split": pl.String, "role": pl.String,
                                      "camera": pl.String, "frame": pl.Int64, "scene": pl.Int64})


def _uri(out: str, species: str, kind: str, individual: str, image: int) -> str:
    return rio.join(out, species, kind, f"{individual}_{image:03d}.png")


@dataclass(frozen=True)
class _Job:
    out: str
    species: str
    individual: int
    images: tuple[tuple[int, str, int], ...]  # (image index, side, scene)
    seed: int
    size: int
    scenes: int
    occlusion: float


def _render_individual(job: _Job) -> list[bool]:
    backgrounds = scene_textures(job.seed, job.scenes, job.size)
    name = f"{job.species}_{job.individual:04d}"
    occluded = []
    for index, side, scene in job.images:
        r = render_image(job.species, job.individual, index, side, backgrounds[scene], seed=job.seed,
                         occlusion=job.occlusion)
        rio.write_image(_uri(job.out, job.species, "images", name, index), Image.fromarray(r.image, "RGB"),
                        compress_level=1)
        rio.write_image(_uri(job.out, job.species, "masks", name, index),
                        Image.fromarray(r.mask.astype(np.uint8) * 255, "L"), compress_level=1)
        rio.write_image(_uri(job.out, job.species, "parts", name, index), Image.fromarray(r.parts, "L"),
                        compress_level=1)
        occluded.append(r.occluded)
    return occluded


def generate(
    out_dir: str | Path,
    species: Sequence[str] = DEFAULT_SPECIES,
    individuals: int = 40,
    images_per_individual: int = 12,
    size: int = 128,
    seed: int = 0,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.3,
    scenes: int = DEFAULT_SCENES,
    cameras: int = DEFAULT_CAMERAS,
    occlusion: float = DEFAULT_OCCLUSION,
    workers: int | None = None,
) -> pl.DataFrame:
    """Write images, masks, part maps and ``manifest.parquet`` under ``out_dir`` (local or s3://) and
    return the manifest. Byte-identical for the same arguments whatever ``workers`` is."""
    if isinstance(species, str):
        species = tuple(s.strip() for s in species.split(",") if s.strip())
    for name in species:
        _preset(name)
    if individuals < 1 or images_per_individual < 1:
        raise ValueError("individuals and images_per_individual must be >= 1")
    if size < 32:
        raise ValueError(f"size {size} is too small to draw identity cues: use >= 32")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = str(out_dir) if rio.is_s3(str(out_dir)) else str(Path(out_dir).expanduser().resolve())
    table = plan(species, individuals, images_per_individual, seed=seed, val_fraction=val_fraction,
                 test_fraction=test_fraction, scenes=scenes, cameras=cameras)
    jobs = []
    for (name, ind), group in table.group_by(["species", "index"], maintain_order=True):
        images = tuple(zip(group["image"], group["side"], group["scene"], strict=True))
        jobs.append(_Job(out, name, ind, images, seed, size, scenes, occlusion))
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            results = pool.map(_render_individual, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
    else:
        results = [_render_individual(job) for job in jobs]
    occluded = [flag for result in results for flag in result]

    individual = pl.format("{}_{}", pl.col("species"), pl.col("index").cast(pl.String).str.zfill(4))
    image = pl.col("image").cast(pl.String).str.zfill(3)

    def uri(kind: str) -> pl.Expr:
        sep = "/" if rio.is_s3(out) else os.sep
        return pl.concat_str([pl.lit(out), pl.col("species"), pl.lit(kind), pl.format("{}_{}.png", individual, image)],
                             separator=sep)

    df = table.with_columns(
        pl.format("{}/{}/{}", pl.col("species"), pl.col("index").cast(pl.String).str.zfill(4), image).alias("image_id"),
        uri("images").alias("image_uri"),
        individual.alias("individual"),
        pl.format("{}_{}", individual, pl.col("side")).alias("entity"),
        uri("masks").alias("mask_uri"),
        uri("masks").alias("ref_mask_uri"),
        uri("parts").alias("parts_uri"),
        pl.format("scene_{}", pl.col("scene").cast(pl.String).str.zfill(2)).alias("scene"),
        pl.lit(None, dtype=pl.String).alias("seg_method"),
        pl.Series("occluded", occluded, dtype=pl.Boolean),
    ).drop("index", "image")
    df = manifest.conform(df)
    source = rio.join(out, "manifest.parquet")
    manifest.check(df, source=source, disjoint=SPLIT_DISJOINT)
    manifest.write(df, source)
    return df


def main(argv: Sequence[str] | None = None) -> int:
    from reid_core.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m reid_core.data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="output folder or s3:// URI (default: $REID_HOME/data/synthetic)")
    parser.add_argument("--species", default=",".join(DEFAULT_SPECIES), help=f"comma-separated, of {', '.join(SPECIES)}")
    parser.add_argument("--individuals", type=int, default=40, help="individuals per species")
    parser.add_argument("--images-per-individual", type=int, default=12)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--scenes", type=int, default=DEFAULT_SCENES, help="number of background scenes")
    parser.add_argument("--cameras", type=int, default=DEFAULT_CAMERAS)
    parser.add_argument("--occlusion", type=float, default=DEFAULT_OCCLUSION, help="probability of an occluder")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    out = args.out or str(get_settings().synthetic_dir)
    start = time.perf_counter()
    try:
        df = generate(out, args.species, args.individuals, args.images_per_individual, args.size, args.seed,
                      val_fraction=args.val_fraction, test_fraction=args.test_fraction, scenes=args.scenes,
                      cameras=args.cameras, occlusion=args.occlusion, workers=args.workers)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    with pl.Config(tbl_rows=-1):
        print(manifest.summary(df))
    print(f"wrote {len(df)} images to {out} in {elapsed:.1f} s; manifest: {rio.join(out, 'manifest.parquet')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
