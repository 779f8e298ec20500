"""The CLIP family's train transform (CLIP-ReID's augmentation)."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from reid_core.methods.clip.config import Input


def train_transform(augment: Input) -> v2.Compose:
    """PIL -> tensor: Resize (bicubic, as the eval transform) -> flip -> Pad + RandomCrop -> normalise ->
    RandomErasing (zeros: the normalised mean)."""
    size = (augment.height, augment.width)
    steps: list = [v2.ToImage(), v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)]
    if augment.flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(augment.flip_p))
    if augment.pad > 0:
        steps += [v2.Pad(augment.pad, fill=0), v2.RandomCrop(size)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(augment.mean, augment.std)]
    if augment.erasing_p > 0:
        steps.append(v2.RandomErasing(p=augment.erasing_p, value=0))
    return v2.Compose(steps)
