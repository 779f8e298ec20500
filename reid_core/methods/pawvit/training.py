"""PAW-ViT's training: one stage, P x K batches, AdamW on every parameter (weight decay included) with
the authors' timm warm-up + cosine (``recipe.lr_schedule``, the ViT baseline's), and the multi-task loss.

The stage reads the species from the training rows when it starts (also after a resume) and merges
every batch's label maps to the K parts of that species' scheme.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from reid_core.methods.contract import Stage, StageContext, StagePlan
from reid_core.methods.image_method import trainable_parameters
from reid_core.methods.pawvit.config import PawViTConfig
from reid_core.methods.pawvit.losses import pawvit_loss
from reid_core.methods.pawvit.recipe import lr_schedule
from reid_core.methods.pawvit.targets import merge_table, part_targets, species_scheme
from reid_core.nn.heads import train_all_but_bnneck_biases
from reid_core.nn.schedules import per_epoch

PARTS_KEY = "parts"  # the batch key of the label maps (``Method.mask_columns``)


class PartTargets:
    """Batch label maps -> one-hot K+1 targets, with the merge table of the training species."""

    def __init__(self, num_parts: int) -> None:
        self.num_parts = num_parts
        self.table: torch.Tensor | None = None

    def start(self, network: nn.Module, context: StageContext) -> None:
        """``Stage.on_start``: the training rows' species gives the merge table."""
        self.table = merge_table(species_scheme(context.rows, self.num_parts), self.num_parts).to(context.device)

    def __call__(self, labels: torch.Tensor) -> torch.Tensor:
        if self.table is None:
            raise RuntimeError("the pawvit stage has not started: call its on_start with the training rows first")
        return part_targets(labels, self.table, self.num_parts)


def compute_loss(config: PawViTConfig, model: nn.Module, batch: Mapping[str, torch.Tensor], targets: PartTargets
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    images = batch["image"]
    if PARTS_KEY not in batch:
        raise KeyError(f"a pawvit batch needs its part label maps under {PARTS_KEY!r} (Method.mask_columns)")
    out = model(images)  # through the (DDP) wrapper
    return pawvit_loss(out, batch["label"].to(images.device).long(), batch["side"].to(images.device),
                       targets(batch[PARTS_KEY].to(images.device)), config.losses)


def make_stage(config: PawViTConfig, plan: StagePlan) -> Stage:
    optim = config.optim
    targets = PartTargets(config.parts.num_parts)

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(trainable_parameters(model), lr=optim.lr, betas=optim.betas,
                                 weight_decay=optim.weight_decay)

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], epoch: int):
        return compute_loss(config, model, batch, targets)

    # stepped once per epoch by the engine: the lr of epoch e is recipe.lr_at(e)
    return Stage(plan=plan, optimizer=optimizer, step=step, trainable=train_all_but_bnneck_biases,
                 on_start=targets.start, scheduler=per_epoch(lr_schedule(config)))
