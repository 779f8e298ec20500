"""ARBase behind the ``Method`` contract: presets, search space, the stage, test-time embedding."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from reid_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reid_core.methods.arbase.config import ARBaseConfig
from reid_core.methods.arbase.network import ARBaseNet, build_network
from reid_core.methods.arbase.training import make_stage
from reid_core.methods.contract import SearchParam, Stage, StagePlan
from reid_core.methods.image_method import ImageMethod, pk_plan

# A CPU-sized ARBase for the synthetic species on 2 cores: random weights, 64 px, a narrow ResNet-18
# (BasicBlocks; IBN-a converts them the same way), 64-d heads, P x K = 8 x 4 and a higher Adam lr,
# 3e-3 as DVE's cpu preset (3.5e-4 is for ImageNet-initialised ResNet-50s; at 1e-3 the CE barely moved
# in 12 epochs on the synthetic tiger: 3.87 -> 3.59). No flip: synthetic entities are individual x
# side and a mirrored left flank is no right flank (the same finding as DVE's cpu preset).
CPU_PRESET = {
    "input": {"size": 64, "flip_p": 0.0},
    "backbone": {"name": "resnet18", "kwargs": {"channels": [32, 64, 128, 256]}, "pretrained": None,
                 "embed_dim": 64},
    "batch": {"ids_per_batch": 8, "images_per_id": 4},
    "optim": {"lr": 3e-3},
    "schedule": {"epochs": 30, "eta_min": 1e-6},
}


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
    presets = {"paper": {}, "cpu": CPU_PRESET}
    search_space = (
        SearchParam("optim.lr", "log", 1e-4, 3e-3),
        SearchParam("optim.weight_decay", "log", 1e-5, 1e-3),
        SearchParam("losses.triplet_margin", "float", 0.1, 0.6),
        SearchParam("losses.label_smoothing", "float", 0.0, 0.3),
        SearchParam("losses.triplet_weight", "choice", choices=(0.5, 1.0, 2.0)),
    )

    def train_transform(self, config: ARBaseConfig) -> Callable:
        return train_transform(config)

    def plan(self, config: ARBaseConfig) -> list[StagePlan]:
        return pk_plan(config)

    def build(self, config: ARBaseConfig, num_classes: int) -> ARBaseNet:
        return build_network(config, num_classes)

    def make_stage(self, config: ARBaseConfig, plan: StagePlan) -> Stage:
        return make_stage(config, plan)
