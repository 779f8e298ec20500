"""The ViT baseline's training: one stage, P x K batches, AdamW, PAW-ViT's timm cosine schedule
(``recipe.lr_schedule``) and BoT's two losses on the BNNeck (CE after it, batch-hard triplet before it)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from reid_core.losses.classification import identity_loss
from reid_core.losses.triplet import batch_hard_triplet_loss
from reid_core.methods.contract import Stage, StagePlan
from reid_core.methods.image_method import trainable_parameters
from reid_core.methods.vit.config import ViTConfig
from reid_core.methods.vit.recipe import lr_schedule
from reid_core.nn.heads import train_all_but_bnneck_biases
from reid_core.nn.schedules import per_epoch


def compute_loss(config: ViTConfig, model: nn.Module, batch: Mapping[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    losses = config.losses
    images = batch["image"]
    labels = batch["label"].to(images.device).long()
    out = model(images)  # through the (DDP) wrapper
    loss_id = identity_loss(out["logits"], labels, losses.label_smoothing)
    loss_triplet = batch_hard_triplet_loss(out["features"], labels, losses.triplet_margin, losses.triplet_distance,
                                          selective=losses.triplet_selective)
    total = losses.id_weight * loss_id + losses.triplet_weight * loss_triplet
    return total, {"loss_id": loss_id.detach(), "loss_triplet": loss_triplet.detach()}


def make_stage(config: ViTConfig, plan: StagePlan) -> Stage:
    optim = config.optim

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(trainable_parameters(model), lr=optim.lr, betas=optim.betas,
                                 weight_decay=optim.weight_decay)

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], epoch: int):
        return compute_loss(config, model, batch)

    # stepped once per epoch by the engine: the lr of epoch e is recipe.lr_at(e)
    return Stage(plan=plan, optimizer=optimizer, step=step, trainable=train_all_but_bnneck_biases,
                 scheduler=per_epoch(lr_schedule(config)))
