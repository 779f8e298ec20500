"""DVENet: trunk + re-ID head (embedding, identity and orientation logits) + the DVE descriptor head."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from reid_core.methods.dve.config import DVEConfig
from reid_core.nn.resnet_trunk import ResNetTrunk, build_trunk


def _init_reid_head(bottleneck: nn.Sequential, classifiers: Sequence[nn.Linear]) -> None:
    """AER (layumi's ClassBlock): kaiming fan_out Linear, BN weight N(1, 0.02), classifiers N(0, 0.001)."""
    linear, bn = bottleneck[0], bottleneck[1]
    nn.init.kaiming_normal_(linear.weight, a=0, mode="fan_out")
    nn.init.zeros_(linear.bias)
    nn.init.normal_(bn.weight, 1.0, 0.02)
    nn.init.zeros_(bn.bias)
    for classifier in classifiers:
        nn.init.normal_(classifier.weight, std=0.001)
        nn.init.zeros_(classifier.bias)


class DVENet(nn.Module):
    """Trunk + re-ID head (embedding, identity and orientation logits) + optional DVE descriptor head.

    ``forward(images, dve_images=None)`` returns a dict: ``embedding`` (BN1d output, the test-time f),
    ``features`` (after dropout: what the classifiers and the circle loss see in training),
    ``logits_id``, ``logits_lr`` and, when ``dve_images`` is given, ``dve`` (descriptors of those images
    from their own trunk pass; a sequence of batches gets one trunk pass per batch, so in train mode each
    has its own BN batch statistics, and their descriptors concatenated in that order). Training goes
    through one ``forward`` call so DDP syncs every gradient.
    """

    def __init__(
        self,
        trunk: ResNetTrunk,
        num_classes: int,
        *,
        embed_dim: int = 512,
        dve_dim: int = 64,
        dve_stage: int | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.trunk = trunk
        if dve_stage is None:
            at_stride4 = [i + 1 for i, s in enumerate(trunk.strides) if s == 4]
            dve_stage = at_stride4[-1] if at_stride4 else 1
        self.dve_stage = dve_stage
        # AER's last_conv keeps PyTorch's default init (its _weight_init call is not recursive).
        self.dve_head = (
            nn.Sequential(
                nn.Conv2d(trunk.channels[dve_stage - 1], dve_dim, kernel_size=1),
                nn.BatchNorm2d(dve_dim),
                nn.ReLU(inplace=True),
            )
            if dve_dim > 0
            else None
        )
        self.bottleneck = nn.Sequential(nn.Linear(trunk.channels[-1], embed_dim), nn.BatchNorm1d(embed_dim))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, num_classes)
        self.orientation = nn.Linear(embed_dim, 2)
        _init_reid_head(self.bottleneck, [self.classifier, self.orientation])

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.trunk.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        trunk = {id(p) for p in self.trunk.parameters()}
        return (p for p in self.parameters() if id(p) not in trunk)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """f: GAP of layer4 -> Linear -> BN1d (no dropout)."""
        return self.bottleneck(self.trunk(images).mean(dim=(2, 3)))

    def dve_features(self, images: torch.Tensor) -> torch.Tensor:
        if self.dve_head is None:
            raise RuntimeError("this DVENet was built without a DVE head (dve_dim=0 or lambda_dve=0)")
        return self.dve_head(self.trunk(images, upto=self.dve_stage))

    def forward(
        self, images: torch.Tensor, dve_images: torch.Tensor | Sequence[torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        embedding = self.embed(images)
        features = self.dropout(embedding)
        out = {
            "embedding": embedding,
            "features": features,
            "logits_id": self.classifier(features),
            "logits_lr": self.orientation(features),
        }
        if isinstance(dve_images, torch.Tensor):
            out["dve"] = self.dve_features(dve_images)
        elif dve_images is not None:
            out["dve"] = torch.cat([self.dve_features(batch) for batch in dve_images])
        return out


def build_network(config: DVEConfig, num_classes: int) -> DVENet:
    backbone = config.backbone
    trunk = build_trunk(
        backbone.name,
        backbone.pretrained,
        smallscale=backbone.smallscale,
        stride_on_3x3=backbone.stride_on_3x3,
        **backbone.kwargs,
    )
    return DVENet(
        trunk,
        num_classes,
        embed_dim=backbone.embed_dim,
        # Without the DVE loss the head would be an unused parameter set (DDP would need
        # find_unused_parameters); leave it out.
        dve_dim=backbone.dve_dim if config.losses.lambda_dve > 0 else 0,
        dve_stage=backbone.dve_stage,
        dropout=backbone.dropout,
    )

