"""Circle loss (Sun et al., CVPR 2020) in the pooled-pair form AER trains with.

AER (``train.py``) uses TinyZeaMays' ``CircleLoss`` on the L2-normalised embeddings: every pair
``i < j`` of the batch is a positive (same label) or a negative similarity, and all of them enter one
log-sum-exp per kind::

    ap = relu(1 + m - sp).detach()        an = relu(sn + m).detach()
    L  = softplus( LSE(-gamma * ap * (sp - (1 - m))) + LSE(gamma * an * (sn - m)) )

The paper's Eq. (7) writes ``log[sum exp(.) * sum exp(.)]`` per anchor; the code's ``softplus`` is
``log(1 + ...)`` over all pairs at once. We implement the code's form (what produced the results).
``gamma``: the paper says 64, the code hard-codes 32 (with a comment that 64 "may lead to a better
result"); the project default is the paper's (see ``DVEConfig.circle_gamma``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pair_similarities(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative cosine-style similarities of all pairs ``i < j``.

    ``embeddings`` (B, D) are used as given (normalise them first for cosine similarity);
    returns ``(sp, sn)``, 1-D tensors of the same-label and different-label pair similarities.
    """
    if embeddings.ndim != 2 or labels.ndim != 1 or embeddings.shape[0] != labels.shape[0]:
        raise ValueError(
            f"expected embeddings (B, D) and labels (B,), got {tuple(embeddings.shape)} and {tuple(labels.shape)}"
        )
    similarity = embeddings @ embeddings.t()
    same = labels[:, None] == labels[None, :]
    index = torch.arange(labels.shape[0], device=labels.device)
    upper = index[:, None] < index[None, :]
    return similarity[same & upper], similarity[~same & upper]


def circle_loss_from_similarities(
    sp: torch.Tensor, sn: torch.Tensor, m: float = 0.25, gamma: float = 64.0
) -> torch.Tensor:
    """The pooled circle loss of positive similarities ``sp`` and negative similarities ``sn``.

    With no positive (or no negative) pair the log-sum-exp of that kind is ``-inf`` and the loss is 0,
    still connected to the graph so DDP sees every parameter used.
    """
    ap = torch.clamp_min(1 + m - sp.detach(), 0.0)
    an = torch.clamp_min(sn.detach() + m, 0.0)
    logit_p = -gamma * ap * (sp - (1 - m))
    logit_n = gamma * an * (sn - m)
    if sp.numel() == 0 or sn.numel() == 0:
        return sp.sum() * 0.0 + sn.sum() * 0.0
    return F.softplus(torch.logsumexp(logit_p, dim=0) + torch.logsumexp(logit_n, dim=0))


def circle_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    m: float = 0.25,
    gamma: float = 64.0,
    *,
    normalize: bool = True,
) -> torch.Tensor:
    """Circle loss of a batch; ``normalize`` L2-normalises the embeddings first (as AER does)."""
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    sp, sn = pair_similarities(embeddings, labels)
    return circle_loss_from_similarities(sp, sn, m=m, gamma=gamma)


class CircleLoss(nn.Module):
    """Module form of :func:`circle_loss` (``forward(embeddings, labels)``)."""

    def __init__(self, m: float = 0.25, gamma: float = 64.0, normalize: bool = True) -> None:
        super().__init__()
        self.m, self.gamma, self.normalize = m, gamma, normalize

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return circle_loss(embeddings, labels, self.m, self.gamma, normalize=self.normalize)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, normalize={self.normalize}"
