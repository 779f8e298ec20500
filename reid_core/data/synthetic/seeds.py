"""Random streams: each is keyed by (seed, species, individual, image, tag), so any image, signature or
plan row can be drawn on its own, in any process and any order, and come out the same."""

from __future__ import annotations

import zlib

import numpy as np

# Stream tags: the last element of a key.
SIGNATURE, IMAGE, PLAN, SPLIT, SCENE, FRAME, OCCLUDER = 1, 2, 3, 4, 5, 6, 7


def species_code(name: str) -> int:
    return zlib.crc32(name.encode())


def stream(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])
