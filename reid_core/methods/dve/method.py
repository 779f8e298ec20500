"""AER's method behind the ``Method`` contract: presets, search space, stages, test-time embedding."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from reid_core.methods.contract import SearchParam, Stage, StagePlan, unwrap
from reid_core.methods.dve.config import DVEConfig
from reid_core.methods.dve.network import DVENet, build_network
from reid_core.methods.dve.training import make_stage, stage_plans
from reid_core.methods.dve.transforms import train_transform
from reid_core.methods.image_method import ImageMethod

# A CPU-sized DVE. The paper's recipe assumes an ImageNet SE-ResNet50 at 224 px on GPUs; from random
# weights at 64 px these choices were measured to matter on the synthetic species:
# - no horizontal flip: entities are individual x side, and a mirrored left flank is no right flank;
# - a narrow ResNet-18 (32..256 channels), AdamW, light padding/erasing, no Cutout, no warm-up;
# - the circle loss off (at gamma 64 it swamped the identity loss from random weights);
# - a high constant learning rate: 30 epochs underfit, and AER's step decay at 2/3 cost mAP (0.54 -> 0.43).
CPU_PRESET = {
    "input": {"size": 64, "flip_p": 0.0, "pad": 4, "erasing_p": 0.3, "cutout_p": 0.0},
    "backbone": {"name": "resnet18", "kwargs": {"channels": [32, 64, 128, 256]}, "pretrained": None,
                 "smallscale": False},
    "batch": {"ids_per_batch": 8, "images_per_id": 3},
    "optim": {"name": "adamw", "lr": 3e-3, "backbone_lr_mult": 1.0},
    "schedule": {"epochs": 30, "warmup_epochs": 0, "lr_step_epoch": 1000},
    "losses": {"circle_gamma": 32, "lambda_reid": 0.0, "lambda_dve": 0.4},
}


class DVEMethod(ImageMethod):
    name = "dve"
    config_type = DVEConfig
    presets = {"paper": {}, "cpu": CPU_PRESET}
    search_space = (
        SearchParam("losses.lambda_dve", "float", 0.0, 2.0),  # paper A.11: [0, 2] in steps of 0.2
        SearchParam("losses.circle_m", "float", 0.1, 0.5),
        SearchParam("losses.circle_gamma", "choice", choices=(32, 64, 128)),
        SearchParam("losses.lambda_reid", "choice", choices=(1, 2, 5)),  # paper A.11
        SearchParam("optim.lr", "log", 1e-3, 1e-1),
    )

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
