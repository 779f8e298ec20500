"""CARE's individual-specific textual prototypes (supplementary Algorithm 2): per identity, the mean of
the image-specific text features of its training images, unnormalised (the authors' ``id_context_feature``)."""

from __future__ import annotations

import torch


def identity_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, D): row c is the mean of ``features`` whose label is c (zeros for a label with none)."""
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"expected features (N, D) and labels (N,), got {tuple(features.shape)} and {tuple(labels.shape)}")
    labels = labels.long()
    sums = features.new_zeros(num_classes, features.shape[1]).index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(features.dtype)
    return sums / counts[:, None]
