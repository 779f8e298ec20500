"""ArcFace's training: one stage of random batches, AdamW (head at ``head_lr_mult`` x lr), a per-epoch
linear warm-up + cosine schedule (``recipe.lr_schedule``), and the ArcFace loss computed inside the
network's forward."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from reid_core.methods.arcface.config import ArcFaceConfig
from reid_core.methods.arcface.recipe import lr_schedule
from reid_core.methods.contract import BatchSpec, Stage, StagePlan, set_trainable, unwrap
from reid_core.nn.schedules import per_epoch

BATCH_KEYS = ("batch.batch_size",)


def stage_plans(config: ArcFaceConfig) -> list[StagePlan]:
    batches = BatchSpec("random", batch_size=config.batch.batch_size)
    return [StagePlan("main", config.schedule.epochs, batches, batch_keys=BATCH_KEYS)]


def trainable(model: nn.Module) -> None:
    set_trainable(unwrap(model).parameters(), True)


def make_stage(config: ArcFaceConfig, plan: StagePlan) -> Stage:
    optim = config.optim

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        net = unwrap(model)
        head = list(net.head_parameters())
        head_ids = {id(p) for p in head}
        backbone = [p for p in net.parameters() if id(p) not in head_ids]
        groups = [{"params": backbone, "lr": optim.lr, "name": "backbone"},
                  {"params": head, "lr": optim.lr * optim.head_lr_mult, "name": "head"}]
        return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], epoch: int):
        images = batch["image"]
        out = model(images, labels=batch["label"].to(images.device))  # through the (DDP) wrapper
        return out["loss_arcface"], {"loss_arcface": out["loss_arcface"].detach()}

    return Stage(plan=plan, optimizer=optimizer, step=step, trainable=trainable,
                 scheduler=per_epoch(lr_schedule(config)))
