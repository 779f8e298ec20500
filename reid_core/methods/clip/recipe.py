"""The CLIP baselines' recipe in one place: the presets of ``clip_zs`` and ``clip_ft`` (``paper`` = the
config's defaults, ``cpu``), the pieces CARE's cpu preset reuses, the fine-tuning search space and
learning-rate schedule."""

from __future__ import annotations

from typing import Any

from reid_core.methods.clip.config import ClipFTConfig
from reid_core.methods.contract import SearchParam
from reid_core.nn.schedules import LrCurve, warmup_multistep

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

ZS_PRESETS: dict[str, Any] = {"paper": {}, "cpu": {"input": CPU_INPUT, "backbone": CPU_BACKBONE}}
FT_PRESETS: dict[str, Any] = {"paper": {}, "cpu": {"input": CPU_INPUT, "backbone": CPU_BACKBONE, **CPU_FINETUNE}}

FINETUNE_SEARCH = (
    SearchParam("optim.lr", "log", 1e-6, 1e-3),
    SearchParam("losses.triplet_margin", "float", 0.1, 0.9),  # CARE's Table 2 range
    SearchParam("losses.id_weight", "choice", choices=(0.25, 0.5, 1.0)),
)


def lr_schedule(config: ClipFTConfig) -> LrCurve:
    """CLIP-ReID's ``WarmupMultiStepLR``: linear warm-up from ``warmup_factor`` times ``gamma`` per milestone
    passed; its loop steps it at the start of each 1-based epoch, so engine epoch e is the authors' e + 1."""
    s = config.schedule
    return warmup_multistep(s.milestones, s.gamma, warmup_epochs=s.warmup_epochs, warmup_start=s.warmup_factor,
                            first_index=1)
