"""Vegetation in front of the animal (a grass tuft, a trunk or branch, a bush): what partial occlusion is."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from reid_core.data.synthetic.colours import vary
from reid_core.data.synthetic.geometry import bezier, stroke


def vegetation(rng: np.random.Generator, size: int, box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
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
            line = bezier((x, ground), (x, (ground + top[1]) / 2), top, 6)
            poly = stroke(line, rng.uniform(2.0, 4.0) * u, 0.5).ravel().tolist()
            fill = vary(rng, green, 15)
            dc.polygon(poly, fill=fill)
            dm.polygon(poly, fill=255)
    elif kind == 1:  # a trunk or branch crossing the frame
        cx, lean = rng.uniform(x0 + 0.15 * w, x1 - 0.15 * w), rng.uniform(-0.45, 0.45)
        width = rng.uniform(0.05, 0.1) * size
        top, bottom = (cx - lean * size / 2, -2.0), (cx + lean * size / 2, size + 2.0)
        poly = stroke(np.array([top, bottom], dtype=float), width, width * rng.uniform(0.8, 1.3)).ravel().tolist()
        dc.polygon(poly, fill=vary(rng, (95, 78, 60), 20))
        dm.polygon(poly, fill=255)
    else:  # a bush at the front or the back end
        cx = x0 + rng.choice([0.15, 0.85]) * w + rng.normal(0, 0.05 * w)
        cy = y1 - rng.uniform(0.0, 0.3) * h
        for _ in range(rng.integers(4, 8)):
            bx, by, r = cx + rng.normal(0, 0.07 * size), cy + rng.normal(0, 0.05 * size), rng.uniform(0.05, 0.11) * size
            box_ = [bx - r, by - r * 0.8, bx + r, by + r * 0.8]
            dc.ellipse(box_, fill=vary(rng, (55, 105, 40), 18))
            dm.ellipse(box_, fill=255)
    rgb = np.asarray(colour, np.float32) * rng.uniform(0.85, 1.15, (size, size, 1)).astype(np.float32)
    return np.asarray(mask) > 0, np.clip(rgb, 0, 255).astype(np.uint8)
