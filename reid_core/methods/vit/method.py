"""The ViT baseline behind the ``Method`` contract: presets, search space, transforms, stage, embedding."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import torch
from torchvision.transforms import v2

from reid_core.data.views import with_flipped_copies
from reid_core.methods.contract import SearchParam, Stage, StagePlan
from reid_core.methods.image_method import ImageMethod, pk_plan
from reid_core.methods.vit.config import ViTConfig
from reid_core.methods.vit.network import ViTReID, build_network
from reid_core.methods.vit.training import make_stage

MEAN = STD = (0.5, 0.5, 0.5)  # PAW-ViT's normalisation (the in21k ViT's)

# A CPU-sized ViT for the synthetic species on 2 cores: random weights, 64 px, timm's ViT-Tiny (192-d,
# 3 heads) with 8 px patches (an 8 x 8 grid, as 256 px / 16 gives 16 x 16) and 6 blocks, no drop-path,
# P x K = 8 x 3, a higher lr with a one-epoch warm-up (8.5e-5 is for fine-tuning ImageNet weights).
# No flipped copies: they double every epoch on 2 cores (not measured against keeping them).
CPU_PRESET = {
    "input": {"size": 64, "flipped_copies": False},
    "backbone": {"name": "vit_tiny_patch16_224", "pretrained": None, "drop_path_rate": 0.0,
                 "kwargs": {"patch_size": 8, "depth": 6}},
    "batch": {"ids_per_batch": 8, "images_per_id": 3},
    "optim": {"lr": 5e-4},
    "schedule": {"epochs": 30, "warmup_epochs": 1, "warmup_lr_init": 1e-5, "min_lr_ratio": 0.1},
}


def train_transform(config: ViTConfig) -> v2.Compose:
    """PIL -> tensor: Resize (bicubic, as the eval transform) -> RandomRotation(+-15, bilinear) -> normalise."""
    augment = config.input
    steps: list = [v2.ToImage(), v2.Resize((augment.size, augment.size),
                                           interpolation=v2.InterpolationMode.BICUBIC, antialias=True)]
    if augment.rotation > 0:
        steps.append(v2.RandomRotation(augment.rotation, interpolation=v2.InterpolationMode.BILINEAR))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    return v2.Compose(steps)


class ViTMethod(ImageMethod):
    """Test features: the L2-normalised pre-BN [CLS] feature."""

    name = "vit"
    mean, std = MEAN, STD
    config_type = ViTConfig
    presets = {"paper": {}, "cpu": CPU_PRESET}
    search_space = (
        SearchParam("optim.lr", "log", 1e-5, 1e-3),
        SearchParam("optim.weight_decay", "log", 1e-5, 1e-2),
        SearchParam("losses.triplet_margin", "float", 0.1, 0.6),
        SearchParam("losses.triplet_weight", "choice", choices=(0.25, 0.5, 1.0)),
        SearchParam("losses.label_smoothing", "float", 0.0, 0.3),
    )

    def training_view(self, rows: pl.DataFrame, config: ViTConfig) -> pl.DataFrame:
        return with_flipped_copies(rows) if config.input.flipped_copies else rows

    def train_transform(self, config: ViTConfig) -> Callable:
        return train_transform(config)

    def plan(self, config: ViTConfig) -> list[StagePlan]:
        return pk_plan(config)

    def build(self, config: ViTConfig, num_classes: int) -> ViTReID:
        return build_network(config, num_classes)

    def make_stage(self, config: ViTConfig, plan: StagePlan) -> Stage:
        return make_stage(config, plan)
