"""PAW-ViT behind the ``Method`` contract: presets, search space, training view, transforms, stage,
embedding and the part attention figure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import polars as pl
from torch import nn

from reid_core.data.views import with_flipped_copies
from reid_core.methods.contract import SearchParam, Stage, StagePlan
from reid_core.methods.image_method import ImageMethod, pk_plan
from reid_core.methods.pawvit.config import PawViTConfig
from reid_core.methods.pawvit.network import PawViT, build_network
from reid_core.methods.pawvit.targets import species_scheme
from reid_core.methods.pawvit.training import PARTS_KEY, make_stage
from reid_core.methods.pawvit.transforms import PartsTrainTransform
from reid_core.methods.vit.method import MEAN, STD
from reid_core.parts.schemes import SCHEMES

# A CPU-sized PAW-ViT for the synthetic species on 2 cores: random weights, 64 px, a ViT-Tiny width
# (192-d, 3 heads) with 8 px patches (an 8 x 8 grid, as 256 px / 16 gives 16 x 16) and 4 blocks,
# 16 x 16 teacher masks (input / 4, as the paper's 64 for 256), no drop-path, P x K = 8 x 3, and the
# vit cpu preset's higher lr with a one-epoch warm-up (8.5e-5 is for fine-tuning ImageNet weights).
# K = 4: a grouping every synthetic species' scheme has (tiger 5/4/3, yak and elephant 4/3).
CPU_PRESET = {
    "input": {"size": 64, "flipped_copies": False},
    "backbone": {"name": "vit_tiny_patch16_224", "pretrained": None, "drop_path_rate": 0.0,
                 "kwargs": {"patch_size": 8, "depth": 4}},
    "parts": {"num_parts": 4, "mask_size": 16},
    "batch": {"ids_per_batch": 8, "images_per_id": 3},
    "optim": {"lr": 5e-4},
    "schedule": {"epochs": 30, "warmup_epochs": 1, "warmup_lr_init": 1e-5, "min_lr_ratio": 0.1},
}


class PawViTMethod(ImageMethod):
    """Test features: the L2-normalised pre-BN aggregated descriptor (ATM and heads are training-only)."""

    name = "pawvit"
    mean, std = MEAN, STD
    config_type = PawViTConfig
    presets = {"paper": {}, "cpu": CPU_PRESET}
    mask_columns = {PARTS_KEY: "parts_uri"}
    # num_parts: the union of the schemes' groupings, narrowed to the species' own by search_space_for
    search_space = (
        SearchParam("parts.num_parts", "choice", choices=(3, 4, 5)),
        SearchParam("losses.lambda_seg", "float", 0.0, 2.0),
        SearchParam("losses.triplet_margin", "float", 0.1, 0.6),
        SearchParam("losses.alpha", "float", 0.1, 1.0),
        SearchParam("optim.lr", "log", 1e-5, 1e-3),
    )

    def search_space_for(self, species: str) -> tuple[SearchParam, ...]:
        """``parts.num_parts`` among the groupings of the species' part scheme (tiger 5/4/3, yak 4/3)."""
        if species not in SCHEMES:  # training names the fix (species_scheme)
            return self.search_space
        choices = SCHEMES[species].choices
        return tuple(replace(p, choices=choices) if p.key == "parts.num_parts" else p for p in self.search_space)

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

    def figures(self, network: nn.Module, config: PawViTConfig, rows: pl.DataFrame, column: str) -> dict:
        """The paper's Fig. 2: each token's ATM mask over a few test images."""
        from reid_core.methods.pawvit.figures import part_attention_maps

        figure = part_attention_maps(network, self.eval_transform(config), rows, column)
        return {} if figure is None else {"part_attention": figure}
