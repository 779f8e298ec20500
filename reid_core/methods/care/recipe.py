"""CARE's recipe in one place: the presets (``paper`` = the config's defaults, ``cpu``), the tuner's search
space and the learning-rate schedule of phase 1 (phase 2's is CLIP-FT's, ``clip.recipe.lr_schedule``)."""

from __future__ import annotations

from typing import Any

from reid_core.methods.care.config import CareConfig
from reid_core.methods.clip.recipe import CPU_BACKBONE, CPU_FINETUNE, CPU_INPUT, FINETUNE_SEARCH
from reid_core.methods.contract import SearchParam
from reid_core.nn.schedules import LrCurve, cosine

# The CLIP-FT cpu preset (same tiny CLIP, input and fine-tuning) plus a phase 1 sized for ~100 training
# images: batches of 16 (64 would leave one batch per epoch), 30 epochs, a higher lr (3.5e-4 is for
# prompts on ImageNet-scale CLIP).
CPU_PRESET: dict[str, Any] = {
    "input": CPU_INPUT,
    "backbone": CPU_BACKBONE,
    **CPU_FINETUNE,
    "phase1": {"epochs": 30, "batch_size": 16, "lr": 2e-3, "warmup_epochs": 2, "warmup_lr_init": 1e-4},
}
PRESETS = {"paper": {}, "cpu": CPU_PRESET}

SEARCH_SPACE = (
    SearchParam("text.prompt_tokens", "choice", choices=(2, 4, 8, 16)),  # supplementary Table 1
    *FINETUNE_SEARCH,  # the phase-2 lr, triplet_margin (Table 2's 0.1..0.9), id_weight
    SearchParam("losses.i2p_weight", "float", 0.0, 2.0),
)


def prompt_lr_schedule(config: CareConfig) -> LrCurve:
    """CLIP-ReID's stage-1 timm ``CosineLRScheduler`` (``t_initial = phase1.epochs``, no warm-up prefix), which
    its loop steps at the start of each 1-based epoch: engine epoch e is the authors' e + 1."""
    p = config.phase1
    return cosine(cycle_epochs=p.epochs, min_factor=p.min_lr / p.lr, warmup_epochs=p.warmup_epochs,
                  warmup_start=p.warmup_lr_init / p.lr, first_index=1)
