"""The CLIP family's config sections, shared by ``clip_zs``, ``clip_ft`` and ``care`` (which adds its own
in ``methods.care.config``). Batch, optim and schedule are the shared sections of ``methods.config`` with
CLIP-ReID's defaults. Every default is the ``paper`` preset; the ``cpu`` presets and the search space are in
``recipe.py``.

Sources (``shared/reference/algorithms.md`` sections 3-4; the authors' code ywu840/CARE, ATRW config,
built on Syliz517/CLIP-ReID):
- OpenAI's CLIP ViT-B/16 (open_clip ``ViT-B-16``, tag ``openai``, QuickGELU), input 256 x 128 (H x W),
  stride-16 patches, the positional grid resized 14 x 14 -> 16 x 8 **bilinearly** (CLIP-ReID; open_clip's
  own helper is bicubic); mean = std = 0.5;
- augmentation: Resize (bicubic), random horizontal flip 0.5, Pad 10 + RandomCrop, random erasing 0.5;
- heads: BN1d(768) and BN1d(512) with frozen zero biases, each before a bias-free identity classifier
  (N(0, 0.001)), on the last block's [CLS] after ``ln_post`` and on its projection;
- fine-tuning: P x K = 8 x 4, Adam lr 5e-6, weight decay 1e-4, biases at 2x lr (weight decay 1e-4),
  ``WarmupMultiStepLR`` (linear warm-up over 10 epochs from 0.1 x lr, x0.1 at epochs 30 and 50), 55 epochs
  (CARE; CLIP-ReID 60); ``0.25 x sum_2 CE_ls(0.1) + 1.0 x sum_3 triplet`` (batch-hard, Euclidean) on the
  block-11 [CLS], the final [CLS] and the projection;
- test features: ``[CLS, projection]`` before the BNs, L2-normalised.

Paper vs code: the triplet margin. CARE's paper (supplementary Table 2) finds gamma = 0.7 best; its
code's default ``SOLVER.MARGIN`` is 0.9 and no config overrides it (CLIP-ReID: 0.3). ``losses.triplet_margin``
defaults to the paper's 0.7.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from reid_core.methods.config import (
    Count,
    Factor,
    ImageSide,
    MethodConfig,
    NonNegativeFloat,
    NonNegativeInt,
    Optim,
    PKBatch,
    PositiveFloat,
    Probability,
    Section,
    WarmupSchedule,
)


class Input(Section):
    height: ImageSide = 256
    width: ImageSide = 128
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # the authors' configs (not CLIP's own statistics)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # A flip mirrors the flank: where entities are individual x side (ATRW) a flipped left flank is no
    # right flank, so the cpu presets turn it off.
    flip_p: Probability = 0.5
    pad: NonNegativeInt = 10  # Pad + RandomCrop back to the input size; 0 disables both
    erasing_p: Probability = 0.5


class Backbone(Section):
    name: str = "ViT-B-16"  # an open_clip architecture (open_clip.list_models()) with a ViT image tower
    # "openai" (an open_clip tag: downloaded where the hub is reachable), a local path / s3:// URI of a CLIP
    # state_dict, or None (random weights)
    pretrained: str | None = "openai"
    # open_clip's model config dict (embed_dim, vision_cfg, text_cfg) in place of ``name``'s: the cpu preset's
    # tiny CLIP; it has no hub weights
    model_cfg: dict[str, Any] | None = None
    quick_gelu: bool = True  # OpenAI's weights were trained with QuickGELU
    # How the positional grid is resized to the input's (height / patch, width / patch)
    pos_interpolation: Literal["bilinear", "bicubic"] = "bilinear"

    @model_validator(mode="after")
    def _openai_needs_quick_gelu(self) -> Backbone:
        if self.pretrained == "openai" and not self.quick_gelu:
            raise ValueError("backbone.pretrained='openai' needs backbone.quick_gelu=true (OpenAI trained with it)")
        return self


class Batch(PKBatch):
    ids_per_batch: Count = 8  # P
    images_per_id: Count = 4  # K


class ClipOptim(Optim):
    lr: PositiveFloat = 5e-6  # Adam (L2 weight decay, as torch.optim.Adam)
    weight_decay: NonNegativeFloat = 1e-4
    bias_lr_factor: PositiveFloat = 2.0  # parameters named *bias*: lr x this
    bias_weight_decay: NonNegativeFloat = 1e-4


class Schedule(WarmupSchedule):
    epochs: Count = 55
    milestones: tuple[int, ...] = (30, 50)  # lr x gamma at each (1-based epochs, as the authors' scheduler)
    gamma: PositiveFloat = 0.1
    warmup_epochs: NonNegativeInt = 10  # linear from warmup_factor x lr
    warmup_factor: Factor = 0.1


class Losses(Section):
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    id_weight: float = Field(0.25, ge=0)  # x (CE on the [CLS] head + CE on the projection head)
    triplet_weight: float = Field(1.0, ge=0)  # x (sum of the three features' triplet losses)
    triplet_margin: float = Field(0.7, ge=0)  # the paper's best; CARE's code 0.9, CLIP-ReID's 0.3


class ClipZSConfig(MethodConfig):
    """CLIP zero-shot: the frozen image encoder, nothing to train."""

    input: Input = Field(default_factory=Input)
    backbone: Backbone = Field(default_factory=Backbone)


class ClipFTConfig(ClipZSConfig):
    """CLIP fine-tuning: the image encoder with ID + triplet losses (CARE's CLIP-FT)."""

    batch: Batch = Field(default_factory=Batch)
    optim: ClipOptim = Field(default_factory=ClipOptim)
    schedule: Schedule = Field(default_factory=Schedule)
    losses: Losses = Field(default_factory=Losses)
    # bf16: forward passes under autocast on GPU (the authors train under fp16 AMP); ignored on CPU
    precision: Literal["fp32", "bf16"] = "bf16"
