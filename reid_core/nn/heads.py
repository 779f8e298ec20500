"""Heads shared by several methods."""

from __future__ import annotations

import torch
from torch import nn


class BNNeck(nn.Module):
    """BoT's BNNeck: BatchNorm1d with a frozen zero bias between the metric feature and the classifier.

    The triplet loss sees the feature before the BN, the identity classifier the BN output (Luo et al.,
    "Bag of Tricks"; PAW-ViT and ARBase use it the same way). ``classifier`` has no bias, as in BoT.
    """

    def __init__(self, dim: int, num_classes: int, classifier_bias: bool = False) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=classifier_bias)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        nn.init.normal_(self.classifier.weight, std=0.001)
        if classifier_bias:
            nn.init.zeros_(self.classifier.bias)

    def centre(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` less the mean the BN subtracts: the batch's in training, the running mean in eval
        mode (the common component of the features, which the classifier never sees)."""
        if self.training:
            return features - features.mean(dim=0, keepdim=True)
        return features - self.bn.running_mean.to(features.dtype)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(BN output, identity logits)."""
        normed = self.bn(features)
        return normed, self.classifier(normed)


def train_all_but_bnneck_biases(model: nn.Module) -> None:
    """Every parameter trains except the BNNecks' BN biases, which BoT keeps at 0 (a ``Stage.trainable``)."""
    net = getattr(model, "module", model)
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    for module in net.modules():
        if isinstance(module, BNNeck):
            module.bn.bias.requires_grad_(False)
