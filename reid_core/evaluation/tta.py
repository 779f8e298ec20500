"""Flip test-time augmentation: embed the image and its horizontal mirror, concatenate, L2-normalise.

This is the AER / PAW-ViT convention on ATRW (the feature dimension doubles). ``mode="mean"`` (the
fast-reid flavour: average of the two embeddings, same dimension) is offered as an alternative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F


def flip_embed(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    mode: Literal["concat", "mean"] = "concat",
) -> torch.Tensor:
    """Embeddings (B, 2D) [or (B, D) for "mean"] of a batch (B, C, H, W) and of its mirror image.

    ``model`` is any callable returning (B, D) embeddings; it runs as given (put it in eval mode and
    wrap the call in ``torch.inference_mode()`` yourself). Both halves are each the raw embedding;
    only the concatenation is normalised, so the two views keep their relative norms.
    """
    if mode not in ("concat", "mean"):
        raise ValueError(f"mode must be 'concat' or 'mean', got {mode!r}")
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    plain = model(images)
    mirrored = model(torch.flip(images, dims=[-1]))
    if plain.ndim != 2 or plain.shape != mirrored.shape:
        raise ValueError(f"model must return (B, D) embeddings, got {tuple(plain.shape)}")
    combined = torch.cat([plain, mirrored], dim=1) if mode == "concat" else (plain + mirrored) / 2
    return F.normalize(combined, dim=1)
