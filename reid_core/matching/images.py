"""An HxWx3 uint8 RGB array to the tensors kornia's detectors take, at a workable size.

Masked, cropped animals from small photos can be ~100 px: too small for a detector to find enough
keypoints, so small images are upsampled; large ones are downsampled to bound the cost. Keypoints are
mapped back to the input's pixels (``to_input``), so callers can draw them on the image they passed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Prepared:
    tensor: torch.Tensor  # (1, C, h, w) float in [0, 1]
    scale: torch.Tensor  # (2,) input pixels per tensor pixel along x and y (sides round differently)

    def to_input(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(N, 2) x, y in tensor pixels -> in the input image's pixels."""
        return keypoints * self.scale.to(keypoints.device, keypoints.dtype)


def check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {image.shape} and dtype {image.dtype}")


def prepare(image: np.ndarray, *, min_side: int, max_side: int, gray: bool, device: str,
            multiple: int = 1) -> Prepared:
    """The image as a (1, 1 or 3, h, w) tensor whose shorter side is at least ``min_side`` and longer side at
    most ``max_side`` (the latter wins), each side rounded down to a ``multiple`` (networks that need it)."""
    check_image(image)
    height, width = image.shape[:2]
    factor = 1.0
    if min(height, width) < min_side:
        factor = min_side / min(height, width)
    if max(height, width) * factor > max_side:
        factor = max_side / max(height, width)
    new_h = max(multiple, int(round(height * factor)) // multiple * multiple)
    new_w = max(multiple, int(round(width * factor)) // multiple * multiple)
    tensor = torch.tensor(image, device=device).permute(2, 0, 1)[None].float() / 255.0  # a copy: decoded arrays are read-only
    if gray:
        tensor = (tensor * torch.tensor([0.299, 0.587, 0.114], device=device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if (new_h, new_w) != (height, width):
        tensor = F.interpolate(tensor, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    return Prepared(tensor.clamp(0, 1), scale=torch.tensor([width / new_w, height / new_h]))


def is_blank(image: np.ndarray, tolerance: int = 2) -> bool:
    """One colour everywhere (a blank mask's fill): no keypoints to find, whatever a network makes of it."""
    check_image(image)
    return bool(np.ptp(image.reshape(-1, 3), axis=0).max() <= tolerance) if image.size else True
