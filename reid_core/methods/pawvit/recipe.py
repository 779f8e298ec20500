"""PAW-ViT's recipe in one place: the presets (``paper`` = the config's defaults, ``cpu``), the tuner's
search space with its narrowing per species, and the learning-rate schedule (the ViT baseline's)."""

from __future__ import annotations

from dataclasses import replace

from reid_core.methods.contract import SearchParam
from reid_core.methods.vit.recipe import CONV_STEM_BACKBONE, lr_at, lr_schedule
from reid_core.parts.schemes import SCHEMES

__all__ = ["PRESETS", "SEARCH_SPACE", "lr_at", "lr_schedule", "search_space_for"]

# A CPU-sized PAW-ViT for the synthetic species on 2 cores: random weights, 64 px, the vit cpu preset's
# ViT-Tiny width (192-d, 3 heads) on the same convolutional stem (an 8 x 8 grid, as 256 px / 16 gives
# 16 x 16; see vit/recipe.py) with 4 blocks, 16 x 16 teacher masks (input / 4, as the paper's 64 for 256),
# no drop-path, P x K = 8 x 3, and the vit cpu preset's higher lr with a one-epoch warm-up.
# K = 4: a grouping every synthetic species' scheme has (tiger 5/4/3, yak and elephant 4/3).
CPU_PRESET = {
    "input": {"size": 64, "flipped_copies": False},
    "backbone": CONV_STEM_BACKBONE | {"kwargs": {"patch_size": 2, "depth": 4}},
    "parts": {"num_parts": 4, "mask_size": 16},
    "batch": {"ids_per_batch": 8, "images_per_id": 3},
    "optim": {"lr": 5e-4},
    # warmup_prefix False: the curve the cpu runs recorded so far trained with (the cosine counts the warm-up
    # epoch, so it reaches its floor at the last epoch); the paper preset's prefix shifts it by one epoch
    "schedule": {"epochs": 30, "warmup_epochs": 1, "warmup_lr_init": 1e-5, "min_lr_ratio": 0.1,
                 "warmup_prefix": False},
    # no Dice floor (the paper's formula, as the cpu runs so far): at 16 x 16 masks the code's 1e-8 floor
    # binds only once an absent part's predicted mass exceeds 100 of the 256 pixels
    # the triplet on the descriptor less the BN's centre, hard triplets selective: as the vit cpu preset
    "losses": {"seg_dice_floor": 0.0, "triplet_feature": "centred", "triplet_selective": True},
}
PRESETS = {"paper": {}, "cpu": CPU_PRESET}

# num_parts: the union of the schemes' groupings, narrowed to the species' own by search_space_for
SEARCH_SPACE = (
    SearchParam("parts.num_parts", "choice", choices=(3, 4, 5)),
    SearchParam("losses.lambda_seg", "float", 0.0, 2.0),
    SearchParam("losses.triplet_margin", "float", 0.1, 0.6),
    SearchParam("losses.alpha", "float", 0.1, 1.0),
    SearchParam("optim.lr", "log", 1e-5, 1e-3),
)


def search_space_for(species: str) -> tuple[SearchParam, ...]:
    """``parts.num_parts`` among the groupings of the species' part scheme (tiger 5/4/3, yak 4/3)."""
    if species not in SCHEMES:  # training names the fix (targets.species_scheme)
        return SEARCH_SPACE
    choices = SCHEMES[species].choices
    return tuple(replace(p, choices=choices) if p.key == "parts.num_parts" else p for p in SEARCH_SPACE)
