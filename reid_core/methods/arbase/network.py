"""ARBase's network: a timm ResNet turned IBN-a with last stride 1, and global + horizontal-part heads.

    x -> stem -> layer1..3 (IBN-a) -> layer4 (BN, stride 1) -> F (B, C4, H/16, W/16)
    F -> GAP                               -> Linear(C4 -> D) -> f_0   -> BNNeck -> (g_0, logits_0)
    F -> avg-pool to 2 x 1 stripes -> each -> Linear(C4 -> D) -> f_1.. -> BNNeck -> ...
    F -> avg-pool to 3 x 1 stripes -> each -> Linear(C4 -> D) -> ...

Multi-branch, simplified (a documented choice): MGN (and fast-reid's ``MGN`` meta-architecture) gives each
branch its own copy of layer3[1:] + layer4 and a branch-global head per branch (8 heads). Here the
branches share the whole trunk and differ only in how layer4's map is pooled: 1 global + 2 + 3 stripe
features, 6 heads, each with its own Linear reduction, BNNeck and classifier (``backbone.parts``).
Stripes are ``adaptive_avg_pool2d(F, (n, 1))``: at 384 px F has 24 rows, so these are exact equal
stripes; at small inputs (4 rows at 64 px) neighbouring stripes overlap instead of one going missing.

IBN-a (Pan et al., ECCV 2018; XingangPan/IBN-Net ``resnet_ibn_a``; fast-reid ``IBN``): in every block of
layer1..layer3, ``bn1`` becomes ``IBN``: InstanceNorm2d(affine) on the first ``int(C * 0.5)`` channels and
BatchNorm2d on the rest; the stem and layer4 keep BN. timm has no IBN-a model, so a timm ResNet is
converted in place (Bottleneck and BasicBlock alike: both have ``bn1`` after ``conv1``). The submodules
are named ``IN`` and ``BN`` as in IBN-Net, so its ImageNet checkpoints load by key.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reid_core.methods.arbase.config import ARBaseConfig
from reid_core.nn.heads import BNNeck
from reid_core.nn.resnet_trunk import ResNetTrunk, set_stage_stride, stem_and_layers
from reid_core.nn.weights import (
    create_timm_backbone,
    is_checkpoint_uri,
    load_backbone_weights,
    read_state_dict,
)


class IBN(nn.Module):
    """Instance-Batch Normalisation (IBN-a): IN on the first ``int(planes * ratio)`` channels, BN on the rest."""

    def __init__(self, planes: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(planes * ratio)
        if not 0 < self.half < planes:
            raise ValueError(f"IBN needs 0 < int(planes * ratio) < planes, got planes={planes}, ratio={ratio}")
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    @property
    def num_features(self) -> int:
        return self.half + self.BN.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(first.contiguous()), self.BN(rest.contiguous())], dim=1)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, ratio: float = 0.5) -> IBN:
        """An IBN in place of ``bn``: its BN half takes ``bn``'s parameters and statistics of those channels
        (ImageNet BN weights fill the BN half only; the IN half starts at weight 1, bias 0)."""
        ibn = cls(bn.num_features, ratio).to(device=bn.weight.device if bn.weight is not None else None)
        ibn.BN.eps, ibn.BN.momentum = bn.eps, bn.momentum
        with torch.no_grad():
            if bn.affine:
                ibn.BN.weight.copy_(bn.weight[ibn.half:])
                ibn.BN.bias.copy_(bn.bias[ibn.half:])
            if bn.track_running_stats and bn.running_mean is not None:
                ibn.BN.running_mean.copy_(bn.running_mean[ibn.half:])
                ibn.BN.running_var.copy_(bn.running_var[ibn.half:])
                ibn.BN.num_batches_tracked.copy_(bn.num_batches_tracked)
        return ibn


def convert_ibn_a(model: nn.Module, ratio: float = 0.5, stages: tuple[int, ...] = (1, 2, 3)) -> int:
    """Turn ``bn1`` of every block in ``layer{stages}`` of a ResNet into ``IBN``, in place; returns the count."""
    converted = 0
    for index in stages:
        for block in getattr(model, f"layer{index}"):
            bn = getattr(block, "bn1", None)
            if isinstance(bn, IBN):
                continue
            if not isinstance(bn, nn.BatchNorm2d):
                raise ValueError(f"layer{index} block {type(block).__name__} has no BatchNorm2d bn1 to make IBN")
            block.bn1 = IBN.from_batchnorm(bn, ratio)
            converted += 1
    return converted


def _is_ibn_state(state) -> bool:
    return any(".IN." in key or ".BN." in key for key in state)


def build_backbone(
    name: str, pretrained: str | bool | None, *, ibn: bool = True, ibn_ratio: float = 0.5, **kwargs: Any
) -> nn.Module:
    """A timm ResNet (no classifier) with IBN-a in layer1..3 when ``ibn``, and its weights.

    Hub weights and plain state_dicts go through ``create_timm_backbone`` and are converted afterwards (BN
    half only); an IBN-a state_dict (``IN`` / ``BN`` keys) is loaded, strictly, after the conversion.
    """
    if ibn and isinstance(pretrained, str) and is_checkpoint_uri(pretrained):
        state = read_state_dict(pretrained)
        if _is_ibn_state(state):
            model = create_timm_backbone(name, None, **kwargs)
            convert_ibn_a(model, ibn_ratio)
            load_backbone_weights(model, state, pretrained, name)
            return model
    model = create_timm_backbone(name, pretrained, **kwargs)
    if ibn:
        convert_ibn_a(model, ibn_ratio)
    return model


def build_trunk(config: ARBaseConfig) -> ResNetTrunk:
    backbone = config.backbone
    model = build_backbone(backbone.name, backbone.pretrained, ibn=backbone.ibn, ibn_ratio=backbone.ibn_ratio,
                           **backbone.kwargs)
    stem, layers = stem_and_layers(model)
    set_stage_stride(layers[3], backbone.last_stride)
    info = {f["module"]: f["num_chs"] for f in model.feature_info}
    channels = [info[f"layer{i}"] for i in range(1, 5)]
    stage_strides = [1, 2, 2, backbone.last_stride]
    strides = [4 * math.prod(stage_strides[: i + 1]) for i in range(4)]
    return ResNetTrunk(stem, layers, channels, strides)


class ARBaseNet(nn.Module):
    """Trunk + one head per pooled feature (global first, then the stripes of each ``parts`` entry, top down).

    ``forward(images)`` returns ``features`` (B, H, D): the pre-BN features (triplet), ``normed`` (B, H, D):
    the BNNeck outputs, and ``logits`` (H entries of (B, num_classes)), H = 1 + sum(parts).
    """

    def __init__(self, trunk: ResNetTrunk, num_classes: int, *, parts: tuple[int, ...] = (2, 3),
                 embed_dim: int = 256, neck_feat: str = "after") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.trunk = trunk
        self.parts = tuple(parts)
        self.neck_feat = neck_feat
        heads = 1 + sum(self.parts)
        channels = trunk.channels[-1]
        self.reductions = nn.ModuleList(nn.Linear(channels, embed_dim, bias=False) for _ in range(heads))
        for reduction in self.reductions:  # fast-reid weights_init_kaiming of its 1x1 embedding conv
            nn.init.kaiming_normal_(reduction.weight, a=0, mode="fan_in")
        self.necks = nn.ModuleList(BNNeck(embed_dim, num_classes) for _ in range(heads))

    @property
    def num_heads(self) -> int:
        return len(self.necks)

    def branches(self) -> list[slice]:
        """Head indices of each branch: the global one, then one slice per ``parts`` entry."""
        out, start = [slice(0, 1)], 1
        for count in self.parts:
            out.append(slice(start, start + count))
            start += count
        return out

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, C4): the global GAP and each branch's stripes of layer4's map."""
        fmap = self.trunk(images)
        pools = [fmap.mean(dim=(2, 3))[:, None]]
        for count in self.parts:
            pools.append(F.adaptive_avg_pool2d(fmap, (count, 1)).flatten(2).transpose(1, 2))
        return torch.cat(pools, dim=1)

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        pooled = self.pooled(images)
        features = torch.stack([reduce(pooled[:, i]) for i, reduce in enumerate(self.reductions)], dim=1)
        normed, logits = [], []
        for i, neck in enumerate(self.necks):
            bn, lg = neck(features[:, i])
            normed.append(bn)
            logits.append(lg)
        return {"features": features, "normed": torch.stack(normed, dim=1), "logits": logits}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised concatenation of every head's feature (post-BN or pre-BN, ``neck_feat``)."""
        pooled = self.pooled(images)
        features = [reduce(pooled[:, i]) for i, reduce in enumerate(self.reductions)]
        if self.neck_feat == "after":
            features = [neck.bn(f) for neck, f in zip(self.necks, features, strict=True)]
        return F.normalize(torch.cat(features, dim=1), dim=1)


def build_network(config: ARBaseConfig, num_classes: int) -> ARBaseNet:
    backbone = config.backbone
    return ARBaseNet(build_trunk(config), num_classes, parts=backbone.parts, embed_dim=backbone.embed_dim,
                     neck_feat=backbone.neck_feat)
