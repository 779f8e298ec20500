"""Photos that local-feature matchers see in the tests: synthetic tigers, background removed and cropped."""

from __future__ import annotations

import numpy as np

from reid_core.data import synthetic
from reid_core.segmentation.masking import MaskingConfig, apply_mask

SEED, SIZE = 7, 128


def tiger_photo(individual: int, index: int) -> np.ndarray:
    """A synthetic tiger's left flank, background removed and cropped (what identify matches)."""
    scenes = synthetic.scene_textures(seed=SEED, count=2, size=SIZE)
    rendered = synthetic.render_image("tiger", individual, index, "left", scenes[index % 2], seed=SEED, occlusion=0)
    return apply_mask(rendered.image, rendered.mask, MaskingConfig(crop=True))
