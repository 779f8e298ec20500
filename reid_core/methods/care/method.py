"""CARE behind the ``Method`` contract: presets, search space, the two stages, figures."""

from __future__ import annotations

from typing import Any

from torch import nn

from reid_core.methods.care.config import CareConfig
from reid_core.methods.care.features import FrozenFeatures
from reid_core.methods.care.network import CareNet, build_network
from reid_core.methods.care.training import make_finetune_stage_with_prototypes, make_prompt_stage
from reid_core.methods.clip.method import (
    CPU_BACKBONE,
    CPU_FINETUNE,
    CPU_INPUT,
    FINETUNE_SEARCH,
    PK_BATCH_KEYS,
    ClipMethod,
)
from reid_core.methods.contract import BatchSpec, SearchParam, Stage, StagePlan

# The CLIP-FT cpu preset (same tiny CLIP, input and fine-tuning) plus a phase 1 sized for ~100 training
# images: batches of 16 (64 would leave one batch per epoch), 30 epochs, a higher lr (3.5e-4 is for
# prompts on ImageNet-scale CLIP).
CPU_PRESET: dict[str, Any] = {
    "input": CPU_INPUT,
    "backbone": CPU_BACKBONE,
    **CPU_FINETUNE,
    "phase1": {"epochs": 30, "batch_size": 16, "lr": 2e-3, "warmup_epochs": 2, "warmup_lr_init": 1e-4},
}


class CareMethod(ClipMethod):
    name = "care"
    config_type = CareConfig
    presets = {"paper": {}, "cpu": CPU_PRESET}
    search_space = (
        SearchParam("text.prompt_tokens", "choice", choices=(2, 4, 8, 16)),  # supplementary Table 1
        *FINETUNE_SEARCH,  # the phase-2 lr, triplet_margin (Table 2's 0.1..0.9), id_weight
        SearchParam("losses.i2p_weight", "float", 0.0, 2.0),
    )

    def plan(self, config: CareConfig) -> list[StagePlan]:
        prompt = StagePlan("prompt", config.phase1.epochs, BatchSpec("random", batch_size=config.phase1.batch_size),
                           tuned=False, batch_keys=("phase1.batch_size",))
        finetune = StagePlan("finetune", config.schedule.epochs,
                             BatchSpec("pk", config.batch.ids_per_batch, config.batch.images_per_id),
                             batch_keys=PK_BATCH_KEYS)
        return [prompt, finetune]

    def build(self, config: CareConfig, num_classes: int) -> CareNet:
        return build_network(config, num_classes)

    def stages(self, config: CareConfig, network: nn.Module, steps_per_epoch: list[int]) -> list[Stage]:
        prompt, finetune = self.plan(config)
        if len(steps_per_epoch) != 2 or any(steps < 1 for steps in steps_per_epoch):
            raise ValueError(f"steps_per_epoch must be two counts >= 1, got {steps_per_epoch}")
        cache, transform = FrozenFeatures(), self.eval_transform(config)  # the features both phases share
        return [make_prompt_stage(config, prompt, network, cache, transform),
                make_finetune_stage_with_prototypes(config, finetune, cache, transform)]

    def figures(self, network: nn.Module, config: CareConfig, rows, column: str) -> dict:
        """The supplementary's Fig. 1b: textual prototypes among the test images' features (t-SNE)."""
        from reid_core.methods.care.figures import prototype_figure

        figure = prototype_figure(network, self.eval_transform(config), rows, column)
        return {} if figure is None else {"care_prototypes": figure}
