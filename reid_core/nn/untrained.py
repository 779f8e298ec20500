"""Untrained reference embeddings: what a trained model has to beat.

- ``pixels``: the image itself, downsampled; strong when backgrounds or colours give identities away.
- ``random-cnn``: a randomly initialised timm CNN; shows what architecture alone contributes.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn


class PixelEmbedding(nn.Module):
    def __init__(self, side: int = 16) -> None:
        super().__init__()
        self.side = side

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(images, self.side).flatten(1)


def random_cnn(name: str = "resnet18", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, num_classes=0)


BASELINES = {"pixels": lambda seed=0: PixelEmbedding(), "random-cnn": random_cnn}
