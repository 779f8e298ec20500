"""ArcFace's network: a timm backbone's pooled features -> Linear (-> BN) -> embedding, and the ArcFace
loss with its learnable class weights.

    x -> timm backbone (num_classes=0: global pooling) -> Linear(C -> 512) [-> BN1d] -> e
    training: ArcFaceLoss(e, labels)   (pytorch-metric-learning; class weights W (512, C_id))
    test:     e / ||e||

The loss is a submodule (``arcface``) and runs inside ``forward(images, labels)``: its class weights
are in the ``state_dict``, the optimiser and the DDP wrapper like any other parameter, and a training
step is one forward call through the wrapper.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import ArcFaceLoss
from torch import nn

from reid_core.methods.arcface.config import ArcFaceConfig
from reid_core.nn.weights import create_timm_backbone


class ArcFaceNet(nn.Module):
    """``forward(images, labels=None)`` -> ``{"embedding"}`` plus ``"loss_arcface"`` when labels are given."""

    def __init__(self, backbone: nn.Module, num_classes: int, *, embed_dim: int = 512, bn: bool = False,
                 margin: float = 0.5, scale: float = 64.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.neck = nn.Linear(backbone.num_features, embed_dim)
        self.bn = nn.BatchNorm1d(embed_dim) if bn else nn.Identity()
        # pytorch-metric-learning takes the margin in degrees
        self.arcface = ArcFaceLoss(num_classes, embed_dim, margin=math.degrees(margin), scale=scale)

    def head_parameters(self):
        yield from self.neck.parameters()
        yield from self.bn.parameters()
        yield from self.arcface.parameters()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The un-normalised embedding (B, embed_dim)."""
        return self.bn(self.neck(self.backbone(images)))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        embedding = self.features(images)
        out = {"embedding": embedding}
        if labels is not None:
            # in fp32 even under autocast: ArcFaceLoss casts its weights to the embedding's dtype in place,
            # and s = 64 times a bf16 cosine is too coarse
            with torch.autocast(device_type=embedding.device.type, enabled=False):
                out["loss_arcface"] = self.arcface(embedding.float(), labels.long())
        return out

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings (B, embed_dim)."""
        return F.normalize(self.features(images), dim=1)


def build_network(config: ArcFaceConfig, num_classes: int) -> ArcFaceNet:
    backbone = config.backbone
    trunk = create_timm_backbone(backbone.name, backbone.pretrained, **backbone.kwargs)
    return ArcFaceNet(trunk, num_classes, embed_dim=backbone.embed_dim, bn=backbone.bn,
                      margin=config.losses.margin, scale=config.losses.scale)
