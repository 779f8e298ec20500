"""The ViT baseline's recipe in one place: the presets (``paper`` = the config's defaults, ``cpu``), the
tuner's search space and the learning-rate schedule (PAW-ViT's too)."""

from __future__ import annotations

from reid_core.methods.contract import SearchParam
from reid_core.methods.vit.config import ViTConfig
from reid_core.nn.schedules import LrCurve, cosine

# A CPU-sized ViT for the synthetic species on 2 cores: random weights, 64 px, timm's ViT-Tiny (192-d,
# 3 heads) and 6 blocks on an 8 x 8 grid (as 256 px / 16 gives 16 x 16), no drop-path, P x K = 8 x 3, a
# higher lr with a one-epoch warm-up (8.5e-5 is for fine-tuning ImageNet weights).
# The grid comes from a convolutional stem (timm's hybrid R+ViT-Ti: a 7 x 7 stride-2 conv, GroupNorm,
# ReLU and a stride-2 max-pool, then 2 x 2 patches), not from 8 px patches: a patchify ViT from random
# weights barely learns on a few hundred images (its identity loss at chance for the first epochs, the
# triplet above its margin after 30), early convolutions make it learn within them (Xiao et al. 2021,
# "Early Convolutions Help Transformers See Better"; docs/methods.md has the curves).
# No flipped copies: they double every epoch on 2 cores (not measured against keeping them).
CONV_STEM_BACKBONE = {"name": "vit_tiny_r_s16_p8_224", "pretrained": None, "drop_path_rate": 0.0,
                      "kwargs": {"patch_size": 2, "depth": 6}}
CPU_PRESET = {
    "input": {"size": 64, "flipped_copies": False},
    "backbone": CONV_STEM_BACKBONE,
    "batch": {"ids_per_batch": 8, "images_per_id": 3},
    "optim": {"lr": 5e-4},
    # warmup_prefix False: the curve the cpu runs recorded so far trained with (the cosine counts the warm-up
    # epoch, so it reaches its floor at the last epoch); the paper preset's prefix shifts it by one epoch
    "schedule": {"epochs": 30, "warmup_epochs": 1, "warmup_lr_init": 1e-5, "min_lr_ratio": 0.1,
                 "warmup_prefix": False},
    # from random weights the pre-BN feature is one common component (> 99 % of its energy, every cosine
    # > 0.99), so the cosine triplet sat at its margin: it measures the feature less the BN's centre;
    # centred, most of its first triplets are hard, and their full gradient collapses the batch: selective
    "losses": {"triplet_feature": "centred", "triplet_selective": True},
}
PRESETS = {"paper": {}, "cpu": CPU_PRESET}

SEARCH_SPACE = (
    SearchParam("optim.lr", "log", 1e-5, 1e-3),
    SearchParam("optim.weight_decay", "log", 1e-5, 1e-2),
    SearchParam("losses.triplet_margin", "float", 0.1, 0.6),
    SearchParam("losses.triplet_weight", "choice", choices=(0.25, 0.5, 1.0)),
    SearchParam("losses.label_smoothing", "float", 0.0, 0.3),
)


def lr_schedule(config: ViTConfig) -> LrCurve:
    """The authors' timm ``CosineLRScheduler`` (per epoch, one cycle): linear from ``warmup_lr_init`` while
    ``epoch < warmup_epochs``, then the cosine over ``t_initial`` epochs down to ``min_lr_ratio x lr``;
    ``warmup_prefix`` True (theirs): the cosine's clock starts after the warm-up (at ``epoch - warmup_epochs``)."""
    s, lr = config.schedule, config.optim.lr
    return cosine(cycle_epochs=s.t_initial, min_factor=s.min_lr_ratio, warmup_epochs=s.warmup_epochs,
                  warmup_start=s.warmup_lr_init / lr, warmup_prefix=s.warmup_prefix)


def lr_at(config: ViTConfig, epoch: int) -> float:
    """The learning rate of ``epoch``."""
    return config.optim.lr * lr_schedule(config)(epoch)
