"""ArcFace's config. Sections: input, backbone, batch, optim, schedule, losses. Every default is the
``paper`` preset; the ``cpu`` preset is in ``method.py``.

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

from typing import Any

from pydantic import Field

from reid_core.methods.config import MethodConfig, Section


class Input(Section):
    size: int = Field(384, ge=16)  # square H = W
    flip_p: float = Field(0.5, ge=0, le=1)  # random horizontal flip, the only augmentation


class Backbone(Section):
    name: str = "efficientnet_b3"  # any timm model with global pooling (resnet50 is the slides' other one)
    # None: random init; True: the timm hub's default weights (ImageNet; the paper preset); a hub name
    # ("efficientnet_b3.ra2_in1k"); or a local path / s3:// URI of a state_dict.
    pretrained: str | bool | None = True
    kwargs: dict[str, Any] = Field(default_factory=dict)  # extra timm.create_model kwargs
    embed_dim: int = Field(512, ge=1)  # pooled features -> Linear -> embed_dim (slides: 512)
    bn: bool = False  # BatchNorm1d after the Linear (optional; off: the plain ArcFace embedding layer)


class Batch(Section):
    batch_size: int = Field(32, ge=2)  # random batches (ArcFace needs no P x K); >= 2 for BatchNorm


class Optim(Section):
    lr: float = Field(1e-4, gt=0)  # AdamW, the backbone's lr
    head_lr_mult: float = Field(10.0, gt=0)  # Linear neck (+ BN) and the ArcFace class weights: lr x this
    weight_decay: float = Field(1e-2, ge=0)  # AdamW's (decoupled) default
    betas: tuple[float, float] = (0.9, 0.999)


class Schedule(Section):
    epochs: int = Field(30, ge=1)
    warmup_epochs: int = Field(1, ge=0)  # linear from warmup_factor x lr to lr
    warmup_factor: float = Field(0.1, gt=0, le=1)
    eta_min_ratio: float = Field(0.01, ge=0, le=1)  # the cosine's floor, as a share of the lr


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
