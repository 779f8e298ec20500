"""DVE's training: AER's loss of one batch and its two stages (warm-up with the backbone frozen, then all).

Schedules are keyed to the global epoch (the warm-up's epochs count): ``on_epoch_start`` sets each
group's lr to ``initial_lr * lr_factor(epoch)`` (``recipe.lr_schedule``) and the ``LambdaLR`` returned as
the scheduler computes the same factor, so the result is the same whether the engine steps the scheduler
per iteration or per epoch, and after a resume. The warm-up is its own stage so DDP only wraps what it
trains: AER keeps one optimiser throughout, here the main stage starts a new one (its momentum restarts
after the warm-up's few epochs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from reid_core.losses.circle import circle_loss
from reid_core.losses.classification import UNKNOWN_SIDE, identity_loss, orientation_loss
from reid_core.losses.dve import dve_loss
from reid_core.methods.contract import BatchSpec, Stage, StagePlan, set_trainable, unwrap
from reid_core.methods.dve.config import DVEConfig
from reid_core.methods.dve.recipe import lr_schedule
from reid_core.methods.dve.tps import TPSWarper
from reid_core.methods.image_method import PK_BATCH_KEYS


def warmup_factor(config: DVEConfig, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
    """AER's loss multiplier: 0.01 + 0.99 * (i + 1) / (warm-up iterations), capped at 1."""
    schedule = config.schedule
    if epoch >= schedule.warmup_epochs:
        return 1.0
    total = max(1, schedule.warmup_epochs * steps_per_epoch)
    done = epoch * steps_per_epoch + step_in_epoch + 1
    return min(1.0, schedule.warmup_start + (1.0 - schedule.warmup_start) * done / total)


def flip_batch(
    images: torch.Tensor, sides: torch.Tensor, p: float, mode: str, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror images with probability ``p`` (per image or one coin per batch); known sides -> 1 - side."""
    batch = images.shape[0]
    coins = torch.rand(batch if mode == "image" else 1, generator=generator) < p
    flip = coins.expand(batch).to(images.device)
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    sides = torch.where(flip & (sides != UNKNOWN_SIDE), 1 - sides, sides)
    return images, sides


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@dataclass
class _RunState:
    """What a stage's callables share: the optimizer (for the lr) and per-epoch counters/RNG."""

    epoch: int = 0
    step_in_epoch: int = 0
    optimizer: torch.optim.Optimizer | None = None
    generator: torch.Generator | None = None

    def start_epoch(self, epoch: int, seed: int) -> None:
        self.epoch, self.step_in_epoch = epoch, 0
        self.generator = torch.Generator().manual_seed(hash((seed, _rank(), epoch)) & (2**63 - 1))


def compute_loss(
    config: DVEConfig,
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    warper: TPSWarper,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The unscaled AER loss of one batch and its parts (tensors)."""
    losses, augment = config.losses, config.input
    images = batch["image"]
    labels = batch["label"].to(images.device).long()
    sides = batch.get("side")
    sides = torch.full_like(labels, UNKNOWN_SIDE) if sides is None else sides.to(images.device).long()
    reid_images, sides = flip_batch(images, sides, augment.flip_p, augment.flip_mode, generator)
    pair = warper(images, generator) if losses.lambda_dve > 0 else None
    dve_images = None
    if pair is not None:  # source im2, target im1: separately as AER's two dve_forward calls, or as one batch
        dve_images = (pair.im2, pair.im1) if losses.dve_separate_passes else torch.cat([pair.im2, pair.im1])
    out = model(reid_images, dve_images=dve_images)

    loss_id = identity_loss(out["logits_id"], labels, losses.label_smoothing)
    loss_lr = orientation_loss(out["logits_lr"], sides, losses.label_smoothing)
    loss_circle = circle_loss(out["features"], labels, losses.circle_m, losses.circle_gamma)
    if losses.circle_divide_by_batch:
        loss_circle = loss_circle / images.shape[0]
    total = loss_id + loss_lr + losses.lambda_reid * loss_circle
    parts = {"loss_id": loss_id, "loss_lr": loss_lr, "loss_circle": loss_circle}
    if pair is not None:
        source, target = out["dve"].split(images.shape[0])
        loss_dve = dve_loss(
            source,
            target,
            pair.grid,
            normalize_vectors=losses.dve_normalize,
            scale=losses.dve_scale,
            power=losses.dve_power,
            chunk_size=losses.dve_chunk,
            checkpoint=losses.dve_checkpoint,
        )
        total = total + losses.lambda_dve * loss_dve
        parts["loss_dve"] = loss_dve
    else:
        parts["loss_dve"] = total.new_zeros(())
    return total, parts


def stage_plans(config: DVEConfig) -> list[StagePlan]:
    """``warmup`` (when ``schedule.warmup_epochs`` > 0) then ``main``; together ``schedule.epochs``."""
    batches = BatchSpec("pk", config.batch.ids_per_batch, config.batch.images_per_id)
    warmup = min(config.schedule.warmup_epochs, config.schedule.epochs)
    plans = [StagePlan("warmup", warmup, batches, batch_keys=PK_BATCH_KEYS),
             StagePlan("main", config.schedule.epochs - warmup, batches, batch_keys=PK_BATCH_KEYS)]
    return [plan for plan in plans if plan.epochs > 0]


def make_stage(config: DVEConfig, plan: StagePlan, first_epoch: int, steps_per_epoch: int) -> Stage:
    """One AER stage; ``first_epoch`` is its first global epoch (the warm-up's length for ``main``)."""
    state = _RunState()
    warper = TPSWarper(config.tps.warper_config())
    optim = config.optim
    lr_factor = lr_schedule(config)  # of the global epoch

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        net = unwrap(model)
        groups = [
            {"params": list(net.backbone_parameters()), "lr": optim.lr * optim.backbone_lr_mult, "name": "backbone"},
            {"params": list(net.head_parameters()), "lr": optim.lr, "name": "heads"},
        ]
        if optim.name == "adamw":
            state.optimizer = torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay)
        else:
            state.optimizer = torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum,
                                              nesterov=optim.nesterov, weight_decay=optim.weight_decay)
        return state.optimizer

    def scheduler(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: lr_factor(state.epoch))

    def trainable(model: nn.Module) -> None:
        net = unwrap(model)
        set_trainable(net.head_parameters(), True)
        set_trainable(net.backbone_parameters(), plan.name != "warmup")

    def on_epoch_start(model: nn.Module, epoch: int) -> None:
        state.start_epoch(first_epoch + epoch, config.seed)
        if state.optimizer is not None:
            for group in state.optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * lr_factor(first_epoch + epoch)

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        epoch = first_epoch + epoch
        if state.generator is None or epoch != state.epoch:
            state.start_epoch(epoch, config.seed)
        total, parts = compute_loss(config, model, batch, warper, state.generator)
        factor = warmup_factor(config, epoch, state.step_in_epoch, steps_per_epoch)
        state.step_in_epoch += 1
        logs = {"warmup_factor": factor} | {name: float(value.detach()) for name, value in parts.items()}
        return total * factor, logs

    return Stage(plan=plan, optimizer=optimizer, step=step, scheduler=scheduler, trainable=trainable,
                 on_epoch_start=on_epoch_start)
