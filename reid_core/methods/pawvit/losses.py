"""PAW-ViT's multi-task loss (Eq. 5): L = lambda L_SS + alpha L_TRI + L_OR + L_ID, as a named dict.

- L_ID: label-smoothed CE on the BNNeck's logits; L_TRI: batch-hard triplet on the pre-BN descriptor
  (the authors' cosine distance (1 - cos) / 2); both shared with the other methods (``reid_core.losses``).
- L_SS: the exp-log Dice + CE loss between the ATM masks and the one-hot teacher masks.
- L_OR: a BCE per part token against the image's side (0 left, 1 right), over visible parts only.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from reid_core.losses.classification import UNKNOWN_SIDE, identity_loss
from reid_core.losses.exp_log import exp_log_loss
from reid_core.losses.triplet import batch_hard_triplet_loss
from reid_core.methods.pawvit.config import Losses
from reid_core.methods.pawvit.targets import part_visibility


def part_orientation_loss(logits: torch.Tensor, sides: torch.Tensor, visible: torch.Tensor,
                          average: Literal["image", "part"] = "image") -> torch.Tensor:
    """BCE of (B, K) per-part orientation logits against (B,) sides, where ``visible`` (B, K) is true.

    Images of unknown side (-1) take no part. ``image`` (paper Eq. 3): each image's mean over its
    visible parts, then the mean over images with one; ``part`` (the authors' code): each part's mean
    over the images it is visible in, then the mean over parts visible in at least one. 0 (attached to
    the graph, so DDP sees the heads used) when nothing counts.
    """
    known = sides.long() != UNKNOWN_SIDE
    counted = (visible & known[:, None]).float()
    target = sides.clamp_min(0).float()[:, None].expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none") * counted
    axis = 1 if average == "image" else 0  # the axis averaged first
    counts = counted.sum(axis)
    present = counts > 0
    if not bool(present.any()):
        return logits.sum() * 0.0
    return (bce.sum(axis)[present] / counts[present]).mean()


def pawvit_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, sides: torch.Tensor, targets: torch.Tensor,
                losses: Losses) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted total and its parts (unweighted, detached) from the network's training outputs."""
    loss_id = identity_loss(out["logits"], labels, losses.label_smoothing)
    loss_triplet = batch_hard_triplet_loss(out["features"], labels, losses.triplet_margin, losses.triplet_distance,
                                          selective=losses.triplet_selective)
    loss_seg, seg_terms = exp_log_loss(out["masks"], targets, w_dice=losses.seg_w_dice, w_cross=losses.seg_w_cross,
                                       gamma_dice=losses.seg_gamma_dice, gamma_cross=losses.seg_gamma_cross,
                                       softmax=losses.seg_softmax, dice_floor=losses.seg_dice_floor)
    loss_orientation = part_orientation_loss(out["orientation"], sides, part_visibility(targets),
                                             losses.orientation_average)
    total = (losses.lambda_seg * loss_seg + losses.alpha * loss_triplet
             + losses.orientation_weight * loss_orientation + loss_id)
    parts = {"loss_id": loss_id, "loss_triplet": loss_triplet, "loss_seg": loss_seg,
             "loss_seg_dice": seg_terms["dice"], "loss_seg_cross": seg_terms["cross"],
             "loss_orientation": loss_orientation}
    return total, {name: value.detach() for name, value in parts.items()}
