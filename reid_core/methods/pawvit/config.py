"""PAW-ViT's config. Sections: input, backbone, parts, batch, optim, schedule, losses. Every default is
the ``paper`` preset (ATRW's recipe); the ``cpu`` preset and the search space are in ``recipe.py``.

The input, backbone, batch and optimiser sections are the ``vit`` baseline's (the paper trains both
"under the same settings"); see ``reid_core/methods/vit/config.py`` for their sources. Sources of the
rest: the paper (sections 3 and 4.2) and the authors' code (``shared/reference/algorithms.md`` section 2,
eugeniodias5/PAW-ViT, ATRW config).

Where paper and code disagree the default is the paper's and the config offers the code's, except for
two departures of earlier versions from the code, where the default is now the code's (issue 20):
- the exp-log loss's Dice floor: the code clamps Dice at 1e-8 before the log, so a part absent from an
  image with a predicted mass over 100 pixels (always at 64 x 64) adds a constant without gradient; the
  paper's formula has no floor (``losses.seg_dice_floor``: 1e-8 code, 0 paper);
- the cosine after the warm-up: the code's timm scheduler runs it on ``t - warmup`` (``warmup_prefix=True``);
  a cosine counting the warm-up's epochs is ``schedule.warmup_prefix=False`` (the ViT baseline's too);
- warm-up: paper 3 epochs, code 2.5 (``schedule.warmup_epochs``);
- orientation loss averaging: paper Eq. 3 averages each image's BCE over its visible parts (then over
  the batch's images), the code averages each part over its visible images, then over the parts seen
  at least once (``losses.orientation_average``: ``image`` | ``part``);
- the exp-log loss: the paper has one exponent per term (gamma_Dice, gamma_Cross), the code one gamma
  (both 1.2 on ATRW, 1.5 on yak in the code; ``losses.seg_gamma_dice`` / ``seg_gamma_cross``).
Details only the code has: the K+1 sigmoid ATM masks pass through a softmax over the channels before
the exp-log loss (the paper calls them "softmax probabilities" too; ``losses.seg_softmax``); the
aggregation block's input LayerNorms and output projection; the orientation heads share the identity
BNNeck's BN. The authors select and early-stop on test mAP; the engine selects on validation mAP.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reid_core.methods.config import MethodConfig, NonNegativeFloat, Section
from reid_core.methods.vit.config import Backbone, Batch, Input, Optim, ViTSchedule


class Parts(Section):
    # K part tokens (+ one background token): the species' scheme must have a grouping of K parts
    # (reid_core/parts/schemes.py: tiger 5/4/3, yak and elephant 4/3); paper: 5 on ATRW, 4 on yak
    num_parts: int = Field(5, ge=1)
    # side of the distilled masks (the teacher's M_T): H / f with f = 4 (paper: 64 for 256 px input)
    mask_size: int = Field(64, ge=1)


class Schedule(ViTSchedule):
    warmup_epochs: NonNegativeFloat = 3.0  # paper: 3 epochs of linear warm-up (code: 2.5)


class Losses(Section):
    label_smoothing: float = Field(0.2, ge=0, lt=1)  # L_ID on the BNNeck's output
    triplet_margin: float = Field(0.4, ge=0)  # batch-hard, on the pre-BN aggregated descriptor
    triplet_distance: Literal["cosine", "euclidean"] = "cosine"  # cosine: (1 - cos) / 2, the authors'
    triplet_feature: Literal["pre_bn", "centred"] = "pre_bn"  # as the ViT baseline's (vit/config.py)
    triplet_selective: bool = False  # as the ViT baseline's (vit/config.py)
    alpha: float = Field(0.5, ge=0)  # L_TRI weight
    lambda_seg: float = Field(1.0, ge=0)  # L_SS weight (paper: 1 on ATRW, 0.5 on yak)
    orientation_weight: float = Field(1.0, ge=0)  # L_OR weight (1 in Eq. 5; 0 = Table 3's ablation)
    orientation_average: Literal["image", "part"] = "image"  # see the module docstring
    seg_w_dice: float = Field(0.5, ge=0)
    seg_w_cross: float = Field(0.5, ge=0)
    seg_gamma_dice: float = Field(1.2, gt=0)
    seg_gamma_cross: float = Field(1.2, gt=0)
    seg_softmax: bool = True  # softmax over the K+1 ATM masks (code); False: the sigmoid masks as they are
    # Dice clamped at this floor before the log (code: 1e-8, a constant for absent parts); 0: the paper's formula
    seg_dice_floor: float = Field(1e-8, ge=0, lt=1)


class PawViTConfig(MethodConfig):
    input: Input = Field(default_factory=Input)
    backbone: Backbone = Field(default_factory=Backbone)
    parts: Parts = Field(default_factory=Parts)
    batch: Batch = Field(default_factory=Batch)
    optim: Optim = Field(default_factory=Optim)
    schedule: Schedule = Field(default_factory=Schedule)
    losses: Losses = Field(default_factory=Losses)
