"""What the image methods built on one timm backbone share, so each states only what differs.

``ImageMethod`` is for configs with an ``input.size`` (square input) and a ``backbone.pretrained``
entry, and stages built one per plan entry by ``make_stage(config, plan)``. The engine never sees this
class: it is one way to implement the ``Method`` contract, not part of it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from reid_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reid_core.methods.config import MethodConfig
from reid_core.methods.contract import BatchSpec, InputSpec, Method, Stage, StagePlan, unwrap

PK_BATCH_KEYS = ("batch.ids_per_batch", "batch.images_per_id")


class ImageMethod(Method):
    """A ``Method`` whose network takes ``input.size`` square images normalised with ``mean`` / ``std``
    and has an ``embed(images)`` returning L2-normalised test features."""

    mean: ClassVar[tuple[float, float, float]] = IMAGENET_MEAN
    std: ClassVar[tuple[float, float, float]] = IMAGENET_STD

    def offline(self, config: MethodConfig) -> MethodConfig:
        return config.model_copy(update={"backbone": config.backbone.model_copy(update={"pretrained": None})})

    def input_spec(self, config: MethodConfig) -> InputSpec:
        return InputSpec(config.input.size, config.input.size, self.mean, self.std)

    def make_stage(self, config: MethodConfig, plan: StagePlan) -> Stage:
        raise NotImplementedError

    def stages(self, config: MethodConfig, network: nn.Module, steps_per_epoch: list[int]) -> list[Stage]:
        plans = self.plan(config)
        if len(steps_per_epoch) != len(plans) or any(steps < 1 for steps in steps_per_epoch):
            raise ValueError(f"steps_per_epoch must be one count >= 1 per stage, got {steps_per_epoch}")
        return [self.make_stage(config, plan) for plan in plans]

    def embed(self, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return unwrap(network).embed(images)


def pk_plan(config: MethodConfig) -> list[StagePlan]:
    """One ``main`` stage of ``schedule.epochs`` epochs on ``batch.ids_per_batch`` x ``batch.images_per_id``."""
    batches = BatchSpec("pk", config.batch.ids_per_batch, config.batch.images_per_id)
    return [StagePlan("main", config.schedule.epochs, batches, batch_keys=PK_BATCH_KEYS)]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What an optimiser of the (possibly DDP-wrapped) model should update: the parameters that train."""
    return [p for p in unwrap(model).parameters() if p.requires_grad]
