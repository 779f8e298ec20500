"""The ViT baseline's network: a timm ViT's [CLS] feature and a BNNeck.

    x -> patch embed (+ pos, 256 px -> 16 x 16 patches) -> blocks -> LayerNorm -> [CLS] = f   (B, D)
    f -> BNNeck: BN1d (frozen zero bias) -> g -> Linear(D -> C_id, bias) = logits
    training: triplet on f, CE on logits; test: f / ||f||
    ``centred``: the triplet sees f - mean_batch(f), the test f - running mean (the BN's centre)

Weights: hub names and ``True`` go through ``create_timm_backbone`` (timm resamples the position
embeddings to ``img_size``); a checkpoint file is read with the same resolver's ``read_state_dict`` and
passed through timm's ViT ``checkpoint_filter_fn`` first, so a 224-px state_dict (the original
``jx_vit_base_p16_224``) fits a 256-px model the same way; then it loads strictly (classifier excluded).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reid_core.evaluation.tta import flip_embed
from reid_core.methods.vit.config import ViTConfig
from reid_core.nn.heads import BNNeck
from reid_core.nn.weights import (
    create_timm_backbone,
    is_checkpoint_uri,
    load_backbone_weights,
    read_state_dict,
)


def build_backbone(name: str, pretrained: str | bool | None, **kwargs: Any) -> nn.Module:
    """A timm ViT without a classifier (``num_classes=0``: the forward returns the pooled [CLS] token)."""
    if not (isinstance(pretrained, str) and is_checkpoint_uri(pretrained)):
        model = create_timm_backbone(name, pretrained, **kwargs)
    else:
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = read_state_dict(pretrained)
        model = create_timm_backbone(name, None, **kwargs)
        load_backbone_weights(model, checkpoint_filter_fn(dict(state), model), pretrained, name)
    if getattr(model, "cls_token", None) is None or getattr(model, "global_pool", None) != "token":
        raise ValueError(f"backbone {name!r} must be a timm ViT with a class token and global_pool='token'")
    return model


class ViTReID(nn.Module):
    """``forward(images)`` -> ``features`` (the triplet's: pre-BN [CLS], less the BN's centre when
    ``centred``), ``normed`` (BN), ``logits``."""

    def __init__(self, backbone: nn.Module, num_classes: int, *, classifier_bias: bool = True,
                 test_flip: bool = False, centred: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.test_flip, self.centred = test_flip, centred
        self.neck = BNNeck(backbone.num_features, num_classes, classifier_bias=classifier_bias)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        normed, logits = self.neck(features)
        metric = self.neck.centre(features) if self.centred else features
        return {"features": metric, "normed": normed, "logits": logits}

    def feature(self, images: torch.Tensor) -> torch.Tensor:
        """The test feature before normalisation: pre-BN [CLS] (less the BN's running mean when ``centred``)."""
        features = self.backbone(images)
        return self.neck.centre(features) if self.centred else features

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised test features (B, D), or of [f(x), f(flip x)] (B, 2D) with ``test_flip``."""
        if self.test_flip:
            return flip_embed(self.feature, images, mode="concat")
        return F.normalize(self.feature(images), dim=1)


def build_network(config: ViTConfig, num_classes: int) -> ViTReID:
    backbone = config.backbone
    kwargs = {"img_size": config.input.size, "drop_path_rate": backbone.drop_path_rate} | backbone.kwargs
    return ViTReID(build_backbone(backbone.name, backbone.pretrained, **kwargs), num_classes,
                   classifier_bias=backbone.classifier_bias, test_flip=config.input.test_flip,
                   centred=config.losses.triplet_feature == "centred")
