"""The CLIP image re-ID network (CLIP-ReID's image branch): the image encoder and two BNNecks.

    images -> ClipImageEncoder -> penultimate (W), cls (W), proj (E)
    cls  -> BNNeck -> logits_cls        proj -> BNNeck -> logits_proj
    test: [cls, proj] / ||.||  (before the BNs)

Without identities (``num_classes=0``: CLIP zero-shot) there are no heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reid_core.methods.clip.backbone import ClipImageEncoder, build_clip
from reid_core.methods.clip.config import ClipZSConfig
from reid_core.nn.heads import BNNeck

TRIPLET_FEATURES = ("penultimate", "cls", "proj")  # CLIP-ReID's three triplet features


class ClipImageReID(nn.Module):
    """``forward(images)`` -> the encoder's features and, with heads, ``logits_cls`` / ``logits_proj``."""

    def __init__(self, encoder: ClipImageEncoder, num_classes: int = 0) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.encoder = encoder
        self.neck_cls = BNNeck(encoder.width, num_classes) if num_classes else None
        self.neck_proj = BNNeck(encoder.output_dim, num_classes) if num_classes else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.encoder(images)
        if self.neck_cls is not None:
            out["logits_cls"] = self.neck_cls(out["cls"])[1]
            out["logits_proj"] = self.neck_proj(out["proj"])[1]
        return out

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised ``[cls, proj]`` (B, W + E): CARE's and CLIP-ReID's test features."""
        out = self.encoder(images)
        return F.normalize(torch.cat([out["cls"], out["proj"]], dim=1), dim=1)


def build_image_network(config: ClipZSConfig, num_classes: int) -> ClipImageReID:
    """The image branch only: the text tower is dropped (the baselines never use it)."""
    clip = build_clip(config.backbone, config.input.height, config.input.width)
    return ClipImageReID(ClipImageEncoder(clip.visual), num_classes)
