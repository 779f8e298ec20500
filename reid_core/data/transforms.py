"""Image transforms shared by training, evaluation and the baselines (torchvision v2)."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_transform(size: int | tuple[int, int], mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """Resize to ``size`` (bicubic, as AER for yak/elephant), float tensor, normalise."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
