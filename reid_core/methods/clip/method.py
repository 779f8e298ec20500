"""The CLIP baselines behind the ``Method`` contract: ``clip_zs`` (zero-shot, nothing to train) and
``clip_ft`` (the image encoder fine-tuned with ID + triplet losses), CARE's CLIP-ZeroShot and
CLIP-FineTuning. Their presets and search space are in ``recipe.py``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from reid_core.methods.clip.config import ClipFTConfig, ClipZSConfig
from reid_core.methods.clip.network import ClipImageReID, build_image_network
from reid_core.methods.clip.recipe import FINETUNE_SEARCH, FT_PRESETS, ZS_PRESETS
from reid_core.methods.clip.training import make_finetune_stage
from reid_core.methods.clip.transforms import train_transform
from reid_core.methods.config import MethodConfig
from reid_core.methods.contract import BatchSpec, InputSpec, Method, Stage, StagePlan, unwrap
from reid_core.methods.image_method import PK_BATCH_KEYS


class ClipMethod(Method):
    """What the CLIP family shares: H x W input, open_clip weights, CLIP-ReID's augmentation, test features."""

    def offline(self, config: MethodConfig) -> MethodConfig:
        return config.model_copy(update={"backbone": config.backbone.model_copy(update={"pretrained": None})})

    def input_spec(self, config: MethodConfig) -> InputSpec:
        augment = config.input
        return InputSpec(augment.height, augment.width, augment.mean, augment.std)

    def train_transform(self, config: MethodConfig) -> Callable:
        return train_transform(config.input)

    def embed(self, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return unwrap(network).embed(images)


class ClipZSMethod(ClipMethod):
    """The frozen CLIP image encoder: no stage; the engine checkpoints and scores it untrained."""

    name = "clip_zs"
    config_type = ClipZSConfig
    presets = ZS_PRESETS
    epochs_key = None  # nothing to train: --epochs does not apply

    def plan(self, config: ClipZSConfig) -> list[StagePlan]:
        return []

    def build(self, config: ClipZSConfig, num_classes: int) -> ClipImageReID:
        return build_image_network(config, 0)

    def stages(self, config: ClipZSConfig, network: nn.Module, steps_per_epoch: list[int]) -> list[Stage]:
        if steps_per_epoch:
            raise ValueError(f"clip_zs has no stage, got steps_per_epoch={steps_per_epoch}")
        return []


class ClipFTMethod(ClipMethod):
    name = "clip_ft"
    config_type = ClipFTConfig
    presets = FT_PRESETS
    search_space = FINETUNE_SEARCH

    def plan(self, config: ClipFTConfig) -> list[StagePlan]:
        batches = BatchSpec("pk", config.batch.ids_per_batch, config.batch.images_per_id)
        return [StagePlan("finetune", config.schedule.epochs, batches, batch_keys=PK_BATCH_KEYS)]

    def build(self, config: ClipFTConfig, num_classes: int) -> ClipImageReID:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        return build_image_network(config, num_classes)

    def stages(self, config: ClipFTConfig, network: nn.Module, steps_per_epoch: list[int]) -> list[Stage]:
        (plan,) = self.plan(config)
        if len(steps_per_epoch) != 1 or steps_per_epoch[0] < 1:
            raise ValueError(f"steps_per_epoch must be one count >= 1, got {steps_per_epoch}")
        return [make_finetune_stage(config, plan)]
