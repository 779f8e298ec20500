"""ArcFace behind the ``Method`` contract: transforms, the stage, embedding; its presets and search space are
in ``recipe.py``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from reid_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reid_core.methods.arcface.config import ArcFaceConfig
from reid_core.methods.arcface.network import ArcFaceNet, build_network
from reid_core.methods.arcface.recipe import PRESETS, SEARCH_SPACE
from reid_core.methods.arcface.training import make_stage, stage_plans
from reid_core.methods.contract import Stage, StagePlan
from reid_core.methods.image_method import ImageMethod


def train_transform(config: ArcFaceConfig) -> v2.Compose:
    """PIL -> tensor: Resize (bicubic, as the eval transform) -> horizontal flip -> normalise (ImageNet)."""
    augment = config.input
    steps: list = [v2.ToImage(), v2.Resize((augment.size, augment.size),
                                           interpolation=v2.InterpolationMode.BICUBIC, antialias=True)]
    if augment.flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(augment.flip_p))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


class ArcFaceMethod(ImageMethod):
    """Test features: the L2-normalised embedding."""

    name = "arcface"
    config_type = ArcFaceConfig
    presets = PRESETS
    search_space = SEARCH_SPACE

    def train_transform(self, config: ArcFaceConfig) -> Callable:
        return train_transform(config)

    def plan(self, config: ArcFaceConfig) -> list[StagePlan]:
        return stage_plans(config)

    def build(self, config: ArcFaceConfig, num_classes: int) -> ArcFaceNet:
        return build_network(config, num_classes)

    def make_stage(self, config: ArcFaceConfig, plan: StagePlan) -> Stage:
        return make_stage(config, plan)
