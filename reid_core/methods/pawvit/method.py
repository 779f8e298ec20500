"""PAW-ViT behind the ``Method`` contract: training view, transforms, stage, embedding and the part attention
figure; its presets and search space are in ``recipe.py``."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
from torch import nn

from reid_core.data.views import with_flipped_copies
from reid_core.methods.contract import SearchParam, Stage, StagePlan
from reid_core.methods.image_method import ImageMethod, pk_plan
from reid_core.methods.pawvit.config import PawViTConfig
from reid_core.methods.pawvit.evaluation import part_segmentation_scores
from reid_core.methods.pawvit.network import PawViT, build_network
from reid_core.methods.pawvit.recipe import PRESETS, SEARCH_SPACE, search_space_for
from reid_core.methods.pawvit.targets import species_scheme
from reid_core.methods.pawvit.training import PARTS_KEY, make_stage
from reid_core.methods.pawvit.transforms import PartsTrainTransform
from reid_core.methods.vit.method import MEAN, STD


class PawViTMethod(ImageMethod):
    """Test features: the L2-normalised pre-BN aggregated descriptor (ATM and heads are training-only)."""

    name = "pawvit"
    mean, std = MEAN, STD
    config_type = PawViTConfig
    presets = PRESETS
    mask_columns = {PARTS_KEY: "parts_uri"}
    search_space = SEARCH_SPACE

    def search_space_for(self, species: str) -> tuple[SearchParam, ...]:
        return search_space_for(species)

    def training_view(self, rows: pl.DataFrame, config: PawViTConfig) -> pl.DataFrame:
        """The rows (with their flipped copies as new identities, mirrored masks and sides), after
        checking that the species' part scheme has ``parts.num_parts`` parts."""
        if not rows.is_empty():
            species_scheme(rows, config.parts.num_parts)
        return with_flipped_copies(rows) if config.input.flipped_copies else rows

    def train_transform(self, config: PawViTConfig) -> Callable:
        return PartsTrainTransform(config)

    def plan(self, config: PawViTConfig) -> list[StagePlan]:
        return pk_plan(config)

    def build(self, config: PawViTConfig, num_classes: int) -> PawViT:
        return build_network(config, num_classes)

    def make_stage(self, config: PawViTConfig, plan: StagePlan) -> Stage:
        return make_stage(config, plan)

    def evaluation_scores(self, network: nn.Module, config: PawViTConfig, rows: pl.DataFrame, column: str,
                          transform: Callable, *, batch_size: int = 64, device="cpu") -> dict[str, float]:
        """``part_mIoU`` of the ATM masks' argmax against the rows' part maps (``evaluation.py``)."""
        return part_segmentation_scores(network, config, rows, column, transform, batch_size=batch_size,
                                        device=device)

    def figures(self, network: nn.Module, config: PawViTConfig, rows: pl.DataFrame, column: str) -> dict:
        """The paper's Fig. 2: each token's ATM mask over a few test images."""
        from reid_core.methods.pawvit.figures import part_attention_maps

        figure = part_attention_maps(network, self.eval_transform(config), rows, column)
        return {} if figure is None else {"part_attention": figure}
