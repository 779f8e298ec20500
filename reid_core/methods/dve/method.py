"""AER's method behind the ``Method`` contract: stages, test-time embedding, figures; its presets and search
space are in ``recipe.py``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from reid_core.methods.contract import Stage, StagePlan, unwrap
from reid_core.methods.dve.config import DVEConfig
from reid_core.methods.dve.network import DVENet, build_network
from reid_core.methods.dve.recipe import PRESETS, SEARCH_SPACE
from reid_core.methods.dve.training import make_stage, stage_plans
from reid_core.methods.dve.transforms import train_transform
from reid_core.methods.image_method import ImageMethod


class DVEMethod(ImageMethod):
    name = "dve"
    config_type = DVEConfig
    presets = PRESETS
    search_space = SEARCH_SPACE

    def train_transform(self, config: DVEConfig) -> Callable:
        return train_transform(config)

    def plan(self, config: DVEConfig) -> list[StagePlan]:
        return stage_plans(config)

    def build(self, config: DVEConfig, num_classes: int) -> DVENet:
        return build_network(config, num_classes)

    def stages(self, config: DVEConfig, network: nn.Module, steps_per_epoch: list[int]) -> list[Stage]:
        stages, first_epoch = [], 0
        for plan, steps in zip(self.plan(config), steps_per_epoch, strict=True):
            if steps < 1:
                raise ValueError(f"steps_per_epoch must be >= 1, got {steps}")
            stages.append(make_stage(config, plan, first_epoch, steps))
            first_epoch += plan.epochs
        return stages

    def figures(self, network: nn.Module, config: DVEConfig, rows, column: str) -> dict:
        """The AER paper's Fig. 4: DVE correspondence maps on test pairs (none without a DVE head)."""
        from reid_core.methods.dve.figures import correspondence_maps

        figure = correspondence_maps(network, self.eval_transform(config), rows, column)
        return {} if figure is None else {"dve_correspondence": figure}

    def embed(self, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """AER's test features: [f(x), f(flip x)], L2-normalised (2 x embed_dim), in eval mode."""
        from reid_core.evaluation.tta import flip_embed

        net = unwrap(network)
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                return flip_embed(net.embed, images, mode="concat")
        finally:
            net.train(was_training)
