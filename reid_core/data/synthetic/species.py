"""The species registry: each procedural species is a signature (per individual, with a sub-signature per
side), a drawing and a palette; the registry imports the species, the species never import it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from reid_core.data.synthetic import elephant, seeds, tiger, yak
from reid_core.data.synthetic.canvas import Canvas
from reid_core.data.synthetic.geometry import Pose


@dataclass(frozen=True)
class SpeciesPreset:
    """A procedural species: how to draw an individual's signature and an image of it."""

    name: str
    signature: Callable[[np.random.Generator], dict]
    draw: Callable[[Canvas, dict, str, Pose], None]
    palette: Callable[[dict], np.ndarray]
    extent: tuple[float, float, float, float]  # canonical bounding box (x0, y0, x1, y1)
    cues: str
    legs: dict  # the leg curves' spec (limbs.legs), read by the keypoints too
    landmarks: Callable[[dict, str, Pose], dict]  # canonical head, tail and body keypoints (keypoints.py)


SPECIES: dict[str, SpeciesPreset] = {
    name: SpeciesPreset(name, module.signature, module.draw, module.palette, module.EXTENT, module.CUES, module.LEGS,
                        module.landmarks)
    for name, module in (("tiger", tiger), ("yak", yak), ("elephant", elephant))
}


def preset(species: str) -> SpeciesPreset:
    if species not in SPECIES:
        raise ValueError(f"unknown synthetic species {species!r}: use one of {', '.join(SPECIES)}")
    return SPECIES[species]


@lru_cache(maxsize=4096)
def individual_signature(species: str, individual: int, seed: int) -> dict:
    """The persistent signature of one individual (treat as read-only)."""
    return preset(species).signature(seeds.stream(seed, seeds.species_code(species), individual, 0, seeds.SIGNATURE))
