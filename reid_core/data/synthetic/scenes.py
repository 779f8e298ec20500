"""Backgrounds: a fixed set of procedural camera-trap scenes, made once per (seed, count, size); the same
scene is the same pixels in every image that uses it."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from reid_core.data.synthetic import seeds
from reid_core.data.synthetic.colours import blend, vary

DEFAULT_SCENES = 16


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    grid = Image.fromarray(rng.random((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(grid.resize((size, size), Image.BICUBIC))



def _draw(kind: str, rng: np.random.Generator, s: int) -> np.ndarray:
    ys = np.linspace(0, 1, s)[:, None] * np.ones((1, s))
    u = s / 128
    if kind in ("grass", "reeds"):
        low, high = (vary(rng, (70, 110, 40)), vary(rng, (150, 160, 70))) if kind == "grass" else \
            (vary(rng, (120, 110, 60)), vary(rng, (190, 175, 110)))
        img = Image.fromarray(blend(high, low, ys).astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(int(s * s / (14 if kind == "grass" else 30))):
            x, y = rng.uniform(0, s), rng.uniform(0, s * 1.1)
            length = rng.uniform(3, 12 if kind == "grass" else 30) * u
            lean = rng.normal(0, 0.3 if kind == "grass" else 0.15) * length
            d.line([(x, y), (x + lean, y - length)], fill=vary(rng, low if rng.random() < 0.5 else high, 25),
                   width=max(1, int(round(u * rng.uniform(1, 2.5)))))
        return np.asarray(img)
    if kind == "forest":
        base = blend(vary(rng, (30, 50, 30)), vary(rng, (70, 90, 50)), _smooth_noise(rng, s, 5))
        img = Image.fromarray(base.astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(rng.integers(5, 10)):
            x, w = rng.uniform(0, s), rng.uniform(3, 14) * u
            d.polygon([(x, 0), (x + w, 0), (x + w + rng.normal(0, 4) * u, s), (x + rng.normal(0, 4) * u, s)],
                      fill=vary(rng, (90, 70, 55), 25))
        for _ in range(rng.integers(6, 14)):
            x, y, r = rng.uniform(0, s), rng.uniform(0, s * 0.5), rng.uniform(5, 18) * u
            d.ellipse([x - r, y - r * 0.7, x + r, y + r * 0.7], fill=vary(rng, (50, 90, 40), 20))
        return np.asarray(img)
    if kind == "savanna":
        horizon = rng.uniform(0.25, 0.45)
        sky = blend(vary(rng, (150, 190, 225)), vary(rng, (215, 225, 230)), np.clip(ys / horizon, 0, 1))
        ground = blend(vary(rng, (200, 170, 100)), vary(rng, (150, 120, 70)),
                        np.clip((ys - horizon) / (1 - horizon), 0, 1))
        img = Image.fromarray(np.where(ys[..., None] < horizon, sky, ground).astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(rng.integers(2, 5)):
            x, r = rng.uniform(0, s), rng.uniform(6, 14) * u
            y = horizon * s
            d.line([(x, y), (x, y - r)], fill=(70, 55, 40), width=max(1, int(2 * u)))
            d.ellipse([x - 1.6 * r, y - r * 1.5, x + 1.6 * r, y - r * 0.9], fill=vary(rng, (70, 90, 50)))
        for _ in range(int(s * 1.5)):
            x, y = rng.uniform(0, s), rng.uniform(horizon * s, s)
            d.line([(x, y), (x + rng.uniform(2, 8) * u, y)], fill=vary(rng, (170, 140, 85), 25))
        return np.asarray(img)
    if kind == "rocks":
        img = Image.fromarray(np.full((s, s, 3), vary(rng, (120, 110, 100)), np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(rng.integers(25, 45)):
            x, y, r = rng.uniform(-10, s + 10), rng.uniform(-10, s + 10), rng.uniform(5, 22) * u
            d.ellipse([x - r, y - r * 0.7, x + r, y + r * 0.7], fill=vary(rng, (135, 128, 118), 28))
        return np.asarray(img)
    if kind == "mottled":
        t = _smooth_noise(rng, s, int(rng.integers(4, 9)))
        return blend(vary(rng, (60, 80, 45), 30), vary(rng, (150, 140, 90), 30), t).astype(np.uint8)
    if kind == "snow":
        t = 0.5 + 0.5 * np.sin(ys * rng.uniform(20, 40) + 3 * _smooth_noise(rng, s, 4))
        return blend(vary(rng, (200, 210, 225), 12), vary(rng, (235, 238, 245), 8), t).astype(np.uint8)
    # "litter": leaf litter on dirt
    img = Image.fromarray(np.full((s, s, 3), vary(rng, (110, 80, 55)), np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(s * s / 40)):
        x, y, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(1, 4) * u
        d.ellipse([x - r, y - r * 0.5, x + r, y + r * 0.5], fill=vary(rng, (150, 100, 50), 35))
    return np.asarray(img)


SCENE_KINDS = ("grass", "forest", "savanna", "rocks", "mottled", "reeds", "snow", "litter")


@lru_cache(maxsize=8)
def _scenes_cached(seed: int, count: int, size: int) -> np.ndarray:
    out = np.empty((count, size, size, 3), np.uint8)
    for k in range(count):
        rng = seeds.stream(seed, 0, k, 0, seeds.SCENE)
        img = _draw(SCENE_KINDS[k % len(SCENE_KINDS)], rng, size).astype(float)
        out[k] = np.clip(img + rng.normal(0, 3.0, img.shape), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def scene_textures(seed: int, count: int = DEFAULT_SCENES, size: int = 128) -> np.ndarray:
    """The ``count`` background scenes of a dataset, shape (count, size, size, 3) uint8 (read-only)."""
    return _scenes_cached(int(seed), int(count), int(size))
