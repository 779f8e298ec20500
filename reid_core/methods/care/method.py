"""CARE behind the ``Method`` contract: the two stages, figures; its presets and search space are in
``recipe.py``."""

from __future__ import annotations

from torch import nn

from reid_core.methods.care.config import CareConfig
from reid_core.methods.care.features import FrozenFeatures
from reid_core.methods.care.network import CareNet, build_network
from reid_core.methods.care.recipe import PRESETS, SEARCH_SPACE
from reid_core.methods.care.training import make_finetune_stage_with_prototypes, make_prompt_stage
from reid_core.methods.clip.method import ClipMethod
from reid_core.methods.contract import BatchSpec, Stage, StagePlan
from reid_core.methods.image_method import PK_BATCH_KEYS


class CareMethod(ClipMethod):
    name = "care"
    config_type = CareConfig
    presets = PRESETS
    search_space = SEARCH_SPACE

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
