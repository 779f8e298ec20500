"""DVE's config: every knob of AER's method, with the paper's defaults (the authors' code where the paper
is silent). Sections: input (size and augmentation), backbone, batch, optim, schedule (the shared ones of
``methods.config``, with DVE's entries), losses, tps. The presets and the search space: ``recipe.py``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reid_core.methods.config import (
    Count,
    ImageSide,
    MethodConfig,
    NonNegativeFloat,
    NonNegativeInt,
    Optim,
    PKBatch,
    PositiveFloat,
    Probability,
    Schedule,
    Section,
    SquareInput,
    TimmBackbone,
)
from reid_core.methods.dve.tps import TPSConfig


class Input(SquareInput):
    size: ImageSide = 224
    pad: NonNegativeInt = 10
    erasing_p: Probability = 0.5
    erasing_scale: tuple[float, float] = (0.02, 0.2)
    erasing_ratio: tuple[float, float] = (0.3, 1 / 0.3)
    cutout_p: Probability = 0.5  # AER's code (Cutout, 64-256 holes of 4 px at 224 px); 0 disables
    flip_p: Probability = 0.5
    flip_mode: Literal["image", "batch"] = "image"  # "image": a coin per image; "batch": AER's one coin per batch


class Backbone(TimmBackbone):
    name: str = "legacy_seresnet50"  # timm name; AER's checkpoint is legacy_seresnet50.in1k
    # pretrained: True (the shared default), the timm hub's ImageNet weights, as the paper
    smallscale: bool = True  # layer2/layer4 stride 1: output stride 8 (paper), DVE map at stride 4
    stride_on_3x3: bool = True  # AER's local SE-ResNet copy strides conv2 (3x3), timm's legacy conv1
    dve_stage: Literal[1, 2, 3, 4] | None = None  # None = deepest stage at output stride 4 (layer2 if smallscale)
    embed_dim: Count = 512
    dve_dim: NonNegativeInt = 64
    dropout: float = Field(0.5, ge=0, lt=1)


class Batch(PKBatch):
    ids_per_batch: Count = 15  # P x K = 30, the paper's batch size, two images per identity
    images_per_id: Count = 2


class DVEOptim(Optim):
    # "sgd": the paper's SGD + Nesterov (meant for ImageNet-initialised backbones). "adamw": for randomly
    # initialised backbones (CPU, new species without pretrained weights), where SGD at these learning
    # rates barely moves in a few epochs; use lr around 1e-3 with it.
    name: Literal["sgd", "adamw"] = "sgd"
    lr: PositiveFloat = 0.01  # heads
    backbone_lr_mult: NonNegativeFloat = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: NonNegativeFloat = 5e-4


class DVESchedule(Schedule):
    epochs: Count = 80  # 100 for ELPephants in the paper; the warm-up epochs included
    lr_step_epoch: int | None = None  # None: epochs * 2 // 3 (53 of 80, AER's StepLR)
    lr_gamma: PositiveFloat = 0.1
    warmup_epochs: NonNegativeInt = 3  # backbone frozen, loss factor rising from warmup_start to 1
    warmup_start: Probability = 0.01

    @property
    def milestone(self) -> int:
        return self.lr_step_epoch if self.lr_step_epoch is not None else self.epochs * 2 // 3


class Losses(Section):
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    circle_m: float = 0.25
    circle_gamma: float = Field(64.0, gt=0)  # paper 64; AER's code hard-codes 32
    circle_divide_by_batch: bool = True  # AER's code: 2.0 * Circle / B; the paper's Eq. 8 shows no 1/B
    lambda_reid: float = Field(2.0, ge=0)  # paper A.11 and the README command
    lambda_dve: float = Field(0.2, ge=0)  # paper A.11; 0 skips the DVE pass (and head)
    dve_normalize: bool = False  # AER's train.py; DVE's own default is True (L2 + x dve_scale)
    dve_scale: float = 20.0  # DVE's temperature when dve_normalize
    dve_power: float = 0.5  # ||g(u) - v|| ** power
    dve_chunk: int | None = 8  # images per bmm chunk in the DVE loss (memory bound)
    dve_checkpoint: bool = False  # recompute DVE chunks in backward (less memory at 224 px)
    # AER's train.py: the pair's source and target images each through their own trunk pass (dve_forward
    # twice), so in train mode each gets its own BN batch statistics; False: one pass of both concatenated
    dve_separate_passes: bool = True


class TPS(Section):
    """DVE's tps.Warper defaults."""

    warpsd_all: float = 0.001
    warpsd_subset: float = 0.01
    transsd: float = 0.1
    scalesd: float = 0.1
    rotsd: float = 5.0
    first_multiplier: float = 0.5
    first_affine_multiplier: float = 1.0

    def warper_config(self) -> TPSConfig:
        return TPSConfig(warpsd_all=self.warpsd_all, warpsd_subset=self.warpsd_subset, transsd=self.transsd,
                         scalesd=self.scalesd, rotsd=self.rotsd, first_warp_multiplier=self.first_multiplier,
                         first_warp_affine_multiplier=self.first_affine_multiplier)


class DVEConfig(MethodConfig):
    input: Input = Field(default_factory=Input)
    backbone: Backbone = Field(default_factory=Backbone)
    batch: Batch = Field(default_factory=Batch)
    optim: DVEOptim = Field(default_factory=DVEOptim)
    schedule: DVESchedule = Field(default_factory=DVESchedule)
    losses: Losses = Field(default_factory=Losses)
    tps: TPS = Field(default_factory=TPS)
    seed: int = 0  # warps and flips (mixed with the DDP rank and the epoch)

    @model_validator(mode="after")
    def _consistent(self) -> DVEConfig:
        if self.losses.lambda_dve > 0 and self.backbone.dve_dim < 1:
            raise ValueError("losses.lambda_dve > 0 needs backbone.dve_dim >= 1")
        return self
