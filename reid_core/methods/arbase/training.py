"""ARBase's training: one stage, P x K batches, Adam, a per-epoch cosine schedule (``recipe.lr_schedule``),
BoT's two losses.

Loss of a batch (BoT / fast-reid MGN): ``id_weight * mean_h CE_ls(logits_h) + triplet_weight * mean_b
triplet(f_b)`` where h runs over every head (global + stripes) and b over the branches: the global pre-BN
feature, and per part branch the concatenation of its stripes' pre-BN features (fast-reid MGN's
``b22_pool_feat`` / ``b33_pool_feat``). fast-reid's MGN weighs each of its 8 CE terms 0.125 and each of
its 5 triplet terms 0.2, i.e. the same two means.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from reid_core.losses.classification import identity_loss
from reid_core.losses.triplet import batch_hard_triplet_loss
from reid_core.methods.arbase.config import ARBaseConfig
from reid_core.methods.arbase.recipe import lr_schedule
from reid_core.methods.contract import Stage, StagePlan, unwrap
from reid_core.methods.image_method import trainable_parameters
from reid_core.nn.heads import train_all_but_bnneck_biases
from reid_core.nn.schedules import per_epoch


def compute_loss(config: ARBaseConfig, model: nn.Module, batch: Mapping[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    losses = config.losses
    images = batch["image"]
    labels = batch["label"].to(images.device).long()
    out = model(images)  # through the (DDP) wrapper
    loss_id = torch.stack([identity_loss(lg, labels, losses.label_smoothing) for lg in out["logits"]]).mean()
    features = out["features"]
    triplets = [
        batch_hard_triplet_loss(features[:, branch].flatten(1), labels, losses.triplet_margin,
                                losses.triplet_distance)
        for branch in unwrap(model).branches()
    ]
    loss_triplet = torch.stack(triplets).mean()
    total = losses.id_weight * loss_id + losses.triplet_weight * loss_triplet
    return total, {"loss_id": loss_id.detach(), "loss_triplet": loss_triplet.detach()}


def make_stage(config: ARBaseConfig, plan: StagePlan) -> Stage:
    optim = config.optim

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(trainable_parameters(model), lr=optim.lr, betas=optim.betas,
                                weight_decay=optim.weight_decay)

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], epoch: int):
        return compute_loss(config, model, batch)

    return Stage(plan=plan, optimizer=optimizer, step=step, trainable=train_all_but_bnneck_biases,
                 scheduler=per_epoch(lr_schedule(config)))
