"""ArcFace's config. Sections: input, backbone, batch, optim, schedule (the shared sections of
``methods.config`` with ArcFace's defaults), losses. Every default is the ``paper`` preset; the ``cpu``
preset and the search space are in ``recipe.py``.

Sources, per entry:
- the AnimalCLEF25 slides (``shared/papers/animalclef25-arcface-lightglue-slides.md``, after Otarashvili et
  al., "Multispecies Animal Re-ID Using a Large Community-Curated Dataset"): an ImageNet EfficientNet-B3
  (ResNet-50 as the weaker alternative), a 512-d embedding, the ArcFace loss instead of softmax. That is
  all they state.
- ArcFace (Deng et al., arXiv 1801.07698): additive angular margin m = 0.5 rad (28.6 deg) and scale
  s = 64, the values of the paper and of pytorch-metric-learning's ``ArcFaceLoss`` defaults.
- our choices where the slides are silent (documented here so they can be overridden with ``--set``):
  384 x 384 square input (the re-ID resolution of ARBase; between EfficientNet-B3's native 300 px and
  MiewID's 440 px), horizontal flip p 0.5 as the only augmentation, random batches of 32, AdamW with the
  new head (Linear neck and the ArcFace class weights) at 10x the backbone's lr, 30 epochs with one
  warm-up epoch and a cosine decay to 1% of the lr.
"""

from __future__ import annotations

from pydantic import Field

from reid_core.methods.config import (
    AdamOptim,
    Count,
    Factor,
    ImageSide,
    MethodConfig,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    Probability,
    Section,
    SquareInput,
    TimmBackbone,
    WarmupSchedule,
)


class Input(SquareInput):
    size: ImageSide = 384  # square H = W
    flip_p: Probability = 0.5  # random horizontal flip, the only augmentation


class Backbone(TimmBackbone):
    name: str = "efficientnet_b3"  # any timm model with global pooling (resnet50 is the slides' other one)
    # pretrained: True, the timm hub's default weights (ImageNet; the paper preset), or e.g. "efficientnet_b3.ra2_in1k"
    embed_dim: Count = 512  # pooled features -> Linear -> embed_dim (slides: 512)
    bn: bool = False  # BatchNorm1d after the Linear (optional; off: the plain ArcFace embedding layer)


class Batch(Section):
    batch_size: int = Field(32, ge=2)  # random batches (ArcFace needs no P x K); >= 2 for BatchNorm


class Optim(AdamOptim):
    lr: PositiveFloat = 1e-4  # AdamW, the backbone's lr
    head_lr_mult: PositiveFloat = 10.0  # Linear neck (+ BN) and the ArcFace class weights: lr x this
    weight_decay: NonNegativeFloat = 1e-2  # AdamW's (decoupled) default


class Schedule(WarmupSchedule):
    epochs: Count = 30
    warmup_epochs: NonNegativeInt = 1  # linear from warmup_factor x lr to lr
    warmup_factor: Factor = 0.1
    eta_min_ratio: Probability = 0.01  # the cosine's floor, as a share of the lr


class Losses(Section):
    margin: float = Field(0.5, ge=0, lt=1.5708)  # additive angular margin m, radians (ArcFace: 0.5 = 28.6 deg)
    scale: float = Field(64.0, gt=0)  # logit scale s (ArcFace: 64)


class ArcFaceConfig(MethodConfig):
    input: Input = Field(default_factory=Input)
    backbone: Backbone = Field(default_factory=Backbone)
    batch: Batch = Field(default_factory=Batch)
    optim: Optim = Field(default_factory=Optim)
    schedule: Schedule = Field(default_factory=Schedule)
    losses: Losses = Field(default_factory=Losses)
