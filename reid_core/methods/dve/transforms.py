"""DVE's train transform (AER's augmentation); the flip is in the training step, with the side label."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from reid_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reid_core.methods.dve.config import DVEConfig


class Cutout:
    """AER's Cutout on a normalised tensor: with probability ``p`` zero 64..256 squares of 4 px.

    The hole count is for 224 x 224 and scales with the image area, so small test images are not wiped.
    """

    def __init__(self, p: float = 0.5, holes: tuple[int, int] = (64, 256), length: int = 4, reference: int = 224):
        self.p, self.holes, self.length, self.reference = p, holes, length, reference

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or torch.rand(()) >= self.p:
            return image
        height, width = image.shape[-2:]
        count = int(torch.randint(self.holes[0], self.holes[1] + 1, ()))
        count = max(1, round(count * height * width / self.reference**2))
        half = self.length // 2
        ys, xs = torch.randint(0, height, (count,)), torch.randint(0, width, (count,))
        rows = torch.arange(height)
        cols = torch.arange(width)
        in_rows = ((rows[None] >= ys[:, None] - half) & (rows[None] < ys[:, None] + half)).float()
        in_cols = ((cols[None] >= xs[:, None] - half) & (cols[None] < xs[:, None] + half)).float()
        covered = (in_rows.t() @ in_cols) > 0  # (H, W)
        return image * (~covered).to(image.dtype)

    def __repr__(self) -> str:
        return f"Cutout(p={self.p}, holes={self.holes}, length={self.length})"


def train_transform(config: DVEConfig) -> v2.Compose:
    """PIL -> tensor: Resize (bicubic) -> Pad -> RandomCrop -> normalise -> RandomErasing -> Cutout.

    The horizontal flip is not here: it must flip the orientation label too, so ``step`` does it.
    """
    augment = config.input
    size = (augment.size, augment.size)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.Pad(augment.pad, fill=0),
            v2.RandomCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            v2.RandomErasing(p=augment.erasing_p, scale=augment.erasing_scale, ratio=augment.erasing_ratio, value=0),
            Cutout(p=augment.cutout_p),
        ]
    )

