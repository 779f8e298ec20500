"""ARBase behind the ``Method`` contract: transforms, the stage, test-time embedding; its presets and search
space are in ``recipe.py``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from reid_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reid_core.methods.arbase.config import ARBaseConfig
from reid_core.methods.arbase.network import ARBaseNet, build_network
from reid_core.methods.arbase.recipe import PRESETS, SEARCH_SPACE
from reid_core.methods.arbase.training import make_stage
from reid_core.methods.contract import Stage, StagePlan
from reid_core.methods.image_method import ImageMethod, pk_plan


def train_transform(config: ARBaseConfig) -> v2.Compose:
    """PIL -> tensor: Resize (bicubic, fast-reid) -> [Pad + RandomCrop] -> flip -> normalise -> [erasing]."""
    augment = config.input
    size = (augment.size, augment.size)
    steps: list = [v2.ToImage(), v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)]
    if augment.pad > 0:
        steps += [v2.Pad(augment.pad, fill=0), v2.RandomCrop(size)]
    if augment.flip_p > 0:
        steps.append(v2.RandomHorizontalFlip(augment.flip_p))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if augment.erasing_p > 0:
        steps.append(v2.RandomErasing(p=augment.erasing_p, value=0))
    return v2.Compose(steps)


class ARBaseMethod(ImageMethod):
    """Test features: the L2-normalised concatenation of the (1 + sum(parts)) head features."""

    name = "arbase"
    config_type = ARBaseConfig
    presets = PRESETS
    search_space = SEARCH_SPACE

    def train_transform(self, config: ARBaseConfig) -> Callable:
        return train_transform(config)

    def plan(self, config: ARBaseConfig) -> list[StagePlan]:
        return pk_plan(config)

    def build(self, config: ARBaseConfig, num_classes: int) -> ARBaseNet:
        return build_network(config, num_classes)

    def make_stage(self, config: ARBaseConfig, plan: StagePlan) -> Stage:
        return make_stage(config, plan)
