"""PAW-ViT's training transform: the image and its part label map move together.

The ``vit`` baseline's torchvision v2 pipeline (resize, random rotation +-15 deg, normalisation with
mean = std = 0.5) takes the image and the ``tv_tensors.Mask`` label maps at once: the same angle for
both, bilinear for the image and nearest for the labels (v2 never blends a Mask). The labels then go
to the teacher's mask size (nearest), the resolution the ATM masks are compared at (64 x 64 for
256 px input, as the authors' masks).
"""

from __future__ import annotations

from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from reid_core.methods.pawvit.config import PawViTConfig
from reid_core.methods.vit.method import train_transform as image_train_transform


class PartsTrainTransform:
    """``(image, {key: Mask}) -> (normalised tensor, {key: Mask of mask_size x mask_size})``."""

    def __init__(self, config: PawViTConfig) -> None:
        self.joint = image_train_transform(config)
        self.mask_size = config.parts.mask_size

    def __call__(self, image, masks: dict[str, tv_tensors.Mask]):
        image, masks = self.joint(image, masks)
        size = [self.mask_size, self.mask_size]
        return image, {key: TF.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST)
                       for key, mask in masks.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.joint!r}, mask_size={self.mask_size})"
