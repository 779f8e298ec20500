"""Shapes in the canonical frame: the animal faces left (its left flank is visible), x to the tail, y down,
about one unit from nose to tail tip, body centre at the origin; and the pose that places it in an image."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def bezier(p0, p1, p2, n: int = 12) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def stroke(line: np.ndarray, w0: float, w1: float) -> np.ndarray:
    """A polygon around a polyline whose width tapers from ``w0`` to ``w1``."""
    d = np.empty_like(line)
    d[1:-1] = line[2:] - line[:-2]
    d[0], d[-1] = line[1] - line[0], line[-1] - line[-2]
    d /= np.sqrt((d * d).sum(axis=1, keepdims=True)) + 1e-9
    normal = d[:, ::-1] * (-1.0, 1.0)
    half = (w0 + (w1 - w0) * np.arange(len(line)) / max(len(line) - 1, 1))[:, None] / 2
    return np.concatenate([line + normal * half, (line - normal * half)[::-1]])


def rotate(points: np.ndarray, pivot, angle: float) -> np.ndarray:
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


def first_outside(line: np.ndarray, ellipses: tuple[tuple[float, float, float, float], ...],
                  margin: float = 0.0) -> np.ndarray:
    """The first point of ``line`` outside every axis-aligned ellipse (cx, cy, rx, ry) grown by ``margin``:
    where a tail drawn from inside the body comes out from behind it (its last point if it never does)."""
    inside = np.zeros(len(line), dtype=bool)
    for cx, cy, rx, ry in ellipses:
        inside |= ((line[:, 0] - cx) / (rx + margin)) ** 2 + ((line[:, 1] - cy) / (ry + margin)) ** 2 <= 1.0
    outside = np.flatnonzero(~inside)
    return line[outside[0] if len(outside) else -1]
