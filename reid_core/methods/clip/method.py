"""The CLIP baselines behind the ``Method`` contract: ``clip_zs`` (zero-shot, nothing to train) and
``clip_ft`` (the image encoder fine-tuned with ID + triplet losses), CARE's CLIP-ZeroShot and
CLIP-FineTuning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from reid_core.methods.clip.config import ClipFTConfig, ClipZSConfig
from reid_core.methods.clip.network import ClipImageReID, build_image_network
from reid_core.methods.clip.training import make_finetune_stage
from reid_core.methods.clip.transforms import train_transform
from reid_core.methods.config import MethodConfig
from reid_core.methods.contract import BatchSpec, InputSpec, Method, SearchParam, Stage, StagePlan, unwrap

PK_BATCH_KEYS = ("batch.ids_per_batch", "batch.images_per_id")

# A CPU-sized CLIP: random weights, 64 x 64 input, a 4-block 128-wide ViT with 8 px patches (an 8 x 8
# grid) and a 2-block 64-wide text tower with CLIP's real vocabulary and tokenizer (32 tokens fit the
# longest prompt CARE searches: 16 context tokens). 4.1 M parameters (3.2 M of them the token embedding).
TINY_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
CPU_BACKBONE = {"pretrained": None, "model_cfg": TINY_CLIP}
# Measured on the synthetic species (masked, cropped) from random weights, where the ID loss has to carry
# the learning: no flip (entities are individual x side), no padding or erasing (they slowed a 15-epoch
# run from test mAP 0.24 to 0.17), the ID loss at full weight and the triplet at 0.3 (at CARE's 0.25 / 1.0
# the triplet features collapsed and the ID loss stayed at chance), Adam 5e-4 (5e-6 is for fine-tuning
# OpenAI's weights) with a short warm-up.
CPU_INPUT = {"height": 64, "width": 64, "flip_p": 0.0, "pad": 0, "erasing_p": 0.0}
CPU_FINETUNE = {
    "batch": {"ids_per_batch": 8, "images_per_id": 3},
    "optim": {"lr": 5e-4},
    "schedule": {"epochs": 30, "milestones": [20, 27], "warmup_epochs": 2},
    "losses": {"id_weight": 1.0, "triplet_weight": 0.3},
}

FINETUNE_SEARCH = (
    SearchParam("optim.lr", "log", 1e-6, 1e-3),
    SearchParam("losses.triplet_margin", "float", 0.1, 0.9),  # CARE's Table 2 range
    SearchParam("losses.id_weight", "choice", choices=(0.25, 0.5, 1.0)),
)


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
    presets: dict[str, Any] = {"paper": {}, "cpu": {"input": CPU_INPUT, "backbone": CPU_BACKBONE}}
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
    presets: dict[str, Any] = {"paper": {}, "cpu": {"input": CPU_INPUT, "backbone": CPU_BACKBONE, **CPU_FINETUNE}}
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
