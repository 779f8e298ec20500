"""Batch-hard triplet loss (Hermans et al.): per anchor the farthest positive and the closest negative.

``distance="euclidean"`` is fast-reid's / CLIP-ReID's; ``"cosine"`` is PAW-ViT's ``(1 - cos) / 2`` (so
its margin 0.4 is 0.8 on ``1 - cos``). Mean over anchors of ``max(0, margin + d_ap - d_an)``, i.e.
``MarginRankingLoss`` with mean reduction as the authors' code. Anchors without a positive or a negative
in the batch are left out.

``selective=True`` treats the hard triplets, those whose hardest negative is closer than their hardest
positive, as Xuan et al. do ("Hard negative examples are hard, but useful", ECCV 2020): their loss only
pushes the negative away (the positive's distance enters as a constant). The full gradient of such a
triplet also pulls the anchor towards the far positive, through the near negative, so while most
triplets are hard (a network from random weights) it draws the batch together: the batch-hard collapse.
The loss's value is the same either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_distance(features: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    if distance == "cosine":
        normed = F.normalize(features, dim=1)
        return (1.0 - normed @ normed.t()) / 2.0
    if distance == "euclidean":
        squared = (features * features).sum(1)
        d2 = squared[:, None] + squared[None, :] - 2.0 * features @ features.t()
        return d2.clamp_min(1e-12).sqrt()
    raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")


def batch_hard_triplet_loss(
    features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, distance: str = "euclidean",
    selective: bool = False,
) -> torch.Tensor:
    dist = pairwise_distance(features.float(), distance)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & ~eye, ~same
    valid = positive.any(1) & negative.any(1)
    if not bool(valid.any()):
        return features.sum() * 0.0  # still attached to the graph (DDP sees the parameters used)
    hardest_positive = dist.masked_fill(~positive, float("-inf")).amax(1)
    hardest_negative = dist.masked_fill(~negative, float("inf")).amin(1)
    if selective:
        hard = hardest_negative < hardest_positive
        hardest_positive = torch.where(hard, hardest_positive.detach(), hardest_positive)
    return F.relu(margin + hardest_positive - hardest_negative)[valid].mean()
