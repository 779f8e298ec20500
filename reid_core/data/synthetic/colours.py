"""Colour helpers shared by the animals, the scenes and the occluders."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reid_core.data.synthetic.canvas import FAR, FAR_DIM


def jitter(rng: np.random.Generator, rgb: Sequence[int], sd: float = 3.0) -> np.ndarray:
    """An individual's coat colour: ``rgb`` scaled by up to 3 % and shifted by ``sd`` per channel."""
    return np.clip(np.asarray(rgb, dtype=float) * rng.uniform(0.97, 1.03) + rng.normal(0, sd, 3), 0, 255)


def vary(rng: np.random.Generator, rgb: Sequence[int], sd: float = 16.0) -> tuple[int, int, int]:
    """``rgb`` varied mostly in brightness (sd/150 relative) and a little in hue (sd/3 per channel)."""
    varied = np.asarray(rgb) * rng.normal(1.0, sd / 150) + rng.normal(0, sd / 3, 3)
    return tuple(int(v) for v in np.clip(varied, 0, 255))


def blend(a, b, t: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=float) * (1 - t[..., None]) + np.asarray(b, dtype=float) * t[..., None]


def palette(entries: dict[int, Sequence[float]]) -> np.ndarray:
    """Tone -> RGB, with every tone's far-side version dimmed."""
    table = np.zeros((2 * FAR, 3), np.float32)
    for tone, rgb in entries.items():
        table[tone] = rgb
        table[tone + FAR] = np.asarray(rgb) * FAR_DIM
    return table
