"""The ViT baseline's training: one stage, P x K batches, AdamW, PAW-ViT's timm-style cosine schedule
and BoT's two losses on the BNNeck (CE after it, batch-hard triplet before it)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from reid_core.losses.classification import identity_loss
from reid_core.losses.triplet import batch_hard_triplet_loss
from reid_core.methods.contract import BatchSpec, Stage, StagePlan, set_trainable, unwrap
from reid_core.methods.vit.config import ViTConfig
from reid_core.nn.heads import BNNeck

BATCH_KEYS = ("batch.ids_per_batch", "batch.images_per_id")


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
    return total, {"loss_id": loss_id, "loss_triplet": loss_triplet}


def stage_plans(config: ViTConfig) -> list[StagePlan]:
    batches = BatchSpec("pk", config.batch.ids_per_batch, config.batch.images_per_id)
    return [StagePlan("main", config.schedule.epochs, batches, batch_keys=BATCH_KEYS)]


def trainable(model: nn.Module) -> None:
    """Everything trains except the BNNeck's BN bias, frozen at 0 (BoT / PAW-ViT)."""
    net = unwrap(model)
    set_trainable(net.parameters(), True)
    for module in net.modules():
        if isinstance(module, BNNeck):
            module.bn.bias.requires_grad_(False)


def make_stage(config: ViTConfig, plan: StagePlan) -> Stage:
    optim = config.optim

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in unwrap(model).parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)

    def scheduler(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        # stepped once per epoch by the engine: the lr of epoch e is lr_at(e)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(config, epoch))

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], epoch: int
             ) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = compute_loss(config, model, batch)
        return total, {name: float(value.detach()) for name, value in parts.items()}

    return Stage(plan=plan, optimizer=optimizer, step=step, scheduler=scheduler, trainable=trainable)
