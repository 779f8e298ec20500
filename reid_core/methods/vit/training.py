"""The ViT baseline's training: one stage, P x K batches, AdamW, PAW-ViT's timm-style cosine schedule
and BoT's two losses on the BNNeck (CE after it, batch-hard triplet before it)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from reid_core.losses.classification import identity_loss
from reid_core.losses.triplet import batch_hard_triplet_loss
from reid_core.methods.contract import Stage, StagePlan
from reid_core.methods.image_method import per_epoch_schedule, trainable_parameters
from reid_core.methods.vit.config import ViTConfig
from reid_core.nn.heads import train_all_but_bnneck_biases


def lr_at(config: ViTConfig, epoch: int) -> float:
    """timm ``CosineLRScheduler`` (t_in_epochs, cycle_limit 1, no warm-up prefix) at ``epoch``:
    ``warmup_lr_init + epoch * (lr - warmup_lr_init) / warmup_t`` while ``epoch < warmup_t``, then
    ``lr_min + (lr - lr_min) * (1 + cos(pi * epoch / t_initial)) / 2``, and ``lr_min`` from ``t_initial`` on."""
    s, lr = config.schedule, config.optim.lr
    if epoch < s.warmup_epochs:
        return s.warmup_lr_init + epoch * (lr - s.warmup_lr_init) / s.warmup_epochs
    lr_min = s.min_lr_ratio * lr
    if epoch >= s.t_initial:
        return lr_min
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * epoch / s.t_initial))


def lr_factor(config: ViTConfig, epoch: int) -> float:
    return lr_at(config, epoch) / config.optim.lr


def compute_loss(config: ViTConfig, model: nn.Module, batch: Mapping[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    losses = config.losses
    images = batch["image"]
    labels = batch["label"].to(images.device).long()
    out = model(images)  # through the (DDP) wrapper
    loss_id = identity_loss(out["logits"], labels, losses.label_smoothing)
    loss_triplet = batch_hard_triplet_loss(out["features"], labels, losses.triplet_margin, losses.triplet_distance)
    total = losses.id_weight * loss_id + losses.triplet_weight * loss_triplet
    return total, {"loss_id": loss_id.detach(), "loss_triplet": loss_triplet.detach()}


def make_stage(config: ViTConfig, plan: StagePlan) -> Stage:
    optim = config.optim

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(trainable_parameters(model), lr=optim.lr, betas=optim.betas,
                                 weight_decay=optim.weight_decay)

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], epoch: int):
        return compute_loss(config, model, batch)

    # stepped once per epoch by the engine: the lr of epoch e is lr_at(e)
    return Stage(plan=plan, optimizer=optimizer, step=step, trainable=train_all_but_bnneck_biases,
                 scheduler=per_epoch_schedule(lambda epoch: lr_factor(config, epoch)))
