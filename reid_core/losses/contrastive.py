"""Supervised contrastive losses between two sets of features (images and texts), as CLIP-ReID and CARE use.

For anchors ``a_i`` (labels ``y_i``) and candidates ``c_j`` (labels ``z_j``), with ``s(a, c)`` the dot
product (``normalize=False``) or the cosine similarity (``normalize=True``) divided by ``temperature``::

    L = - 1/N sum_i 1/|P(i)| sum_{p in P(i)} log( exp s(a_i, c_p) / sum_j exp s(a_i, c_j) ),
    P(i) = { j : z_j = y_i }

- CARE's L_img2txt / L_txt2img (Eqs. 5-6; CLIP-ReID's stage 1): anchors are a batch's image features and
  candidates its image-specific text features, then the other way round. CLIP-ReID's ``SupConLoss`` uses
  the raw dot product at T = 1. CARE's released ``SupConLoss`` normalises and then returns
  ``exp(cos)`` (its log-softmax is commented out), which is not this loss: we implement the paper's.
- CARE's L_i2pCon (Eq. 10, ``ImgToProConLoss``): anchors are image features, candidates the textual
  prototypes of the identities in the batch, cosine similarity at T = 1.

Anchors without any positive are left out (none: a zero still attached to the graph, for DDP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supervised_contrastive(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    anchor_labels: torch.Tensor,
    candidate_labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    normalize: bool = False,
) -> torch.Tensor:
    """The mean over anchors of minus the mean log-probability of their positive candidates."""
    if anchors.ndim != 2 or candidates.ndim != 2 or anchors.shape[1] != candidates.shape[1]:
        raise ValueError(f"expected anchors (N, D) and candidates (M, D), got {tuple(anchors.shape)} and "
                         f"{tuple(candidates.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    anchors, candidates = anchors.float(), candidates.float()
    if normalize:
        anchors, candidates = F.normalize(anchors, dim=1), F.normalize(candidates, dim=1)
    log_prob = torch.log_softmax(anchors @ candidates.t() / temperature, dim=1)
    positive = (anchor_labels[:, None] == candidate_labels[None, :]).to(log_prob.dtype)
    counts = positive.sum(1)
    has_positive = counts > 0
    if not bool(has_positive.any()):
        return log_prob.sum() * 0.0
    mean_log_prob = (positive * log_prob).sum(1)[has_positive] / counts[has_positive]
    return -mean_log_prob.mean()


def image_text_contrastive(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_img2txt, L_txt2img) of a batch of paired image and text features with shared labels."""
    options = {"temperature": temperature, "normalize": normalize}
    return (supervised_contrastive(image_features, text_features, labels, labels, **options),
            supervised_contrastive(text_features, image_features, labels, labels, **options))


def image_to_prototype_contrastive(
    image_features: torch.Tensor,
    prototypes: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """CARE's L_i2pCon: cosine similarities of each image to the prototypes (rows of ``prototypes``, one per
    identity) of the identities present in the batch; softmax over those prototypes only."""
    identities = labels.unique()
    return supervised_contrastive(image_features, prototypes[identities], labels, identities,
                                  temperature=temperature, normalize=True)
