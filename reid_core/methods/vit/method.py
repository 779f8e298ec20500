"""The ViT baseline behind the ``Method`` contract: training view, transforms, stage, embedding; its presets
and search space are in ``recipe.py``."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import torch
from torchvision.transforms import v2

from reid_core.data.views import with_flipped_copies
from reid_core.methods.contract import Stage, StagePlan
from reid_core.methods.image_method import ImageMethod, pk_plan
from reid_core.methods.vit.config import ViTConfig
from reid_core.methods.vit.network import ViTReID, build_network
from reid_core.methods.vit.recipe import PRESETS, SEARCH_SPACE
from reid_core.methods.vit.training import make_stage

MEAN = STD = (0.5, 0.5, 0.5)  # PAW-ViT's normalisation (the in21k ViT's)

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
    presets = PRESETS
    search_space = SEARCH_SPACE

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
