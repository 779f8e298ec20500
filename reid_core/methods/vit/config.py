"""The ViT-B/16 baseline's config: PAW-ViT's training setup without its part tokens (the paper's
"pre-trained ViT-B trained under the same settings as PAW-ViT"). Sections: input, backbone, batch,
optim, schedule (the shared sections of ``methods.config`` with the ViT's defaults), losses. Every default
is the ``paper`` preset; the ``cpu`` preset and the search space are in ``recipe.py``.

Sources (``shared/reference/algorithms.md`` section 2, the authors' code eugeniodias5/PAW-ViT, ATRW
config, and the paper's section 4.2):
- 256 x 256 input, 16 x 16 patches; the in21k -> in1k ViT-B/16 (``jx_vit_base_p16_224``, timm
  ``vit_base_patch16_224.orig_in21k_ft_in1k``; the position embeddings resampled 14 -> 16 bicubic);
  drop_path 0.1; random rotation +-15 deg (bilinear), mean = std = 0.5, no random flip, no random
  erasing; the flipped copy of every training image as a new identity; flip-concatenated test features
  on ATRW only (``input.test_flip``);
- BNNeck (BN1d with a frozen zero bias; the identity ``fc`` has a bias); label-smoothed CE (0.2) on the
  BN output and batch-hard triplet on the pre-BN feature with the cosine distance (1 - cos) / 2 and
  margin 0.4 (``MarginRankingLoss``, mean); weights 1.0 CE + 0.5 triplet;
- P x K = 8 x 16 (``RandomIdentitySampler``, batch 128, 16 instances);
- AdamW lr 8.5e-5, weight decay 5e-4 on everything; 50 epochs of timm's per-epoch cosine schedule:
  warm-up from 1.7e-7 over 2.5 epochs, ``t_initial = int(50 - 2.5) = 47``, ``lr_min = 0.8 lr`` (so the lr
  only falls by 20%), with timm's warm-up prefix (``optimizer/make_optimizer.py``: ``warmup_prefix=True``):
  after the warm-up the cosine runs on ``t - 2.5``, so it ends at epoch 49.5, one warm-up later than a
  cosine on ``t`` (``schedule.warmup_prefix=False``, what earlier versions ran; up to 1.7% of the lr apart).
- The feature: the baseline has a [CLS] token (PAW-ViT replaces it by part tokens): the CLS token after
  the final LayerNorm; at test time the L2-normalised pre-BN feature (PAW-ViT's ``infer``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reid_core.methods.config import (
    AdamOptim,
    Count,
    ImageSide,
    MethodConfig,
    NonNegativeFloat,
    PKBatch,
    PositiveFloat,
    Schedule,
    Section,
    SquareInput,
    TimmBackbone,
)


class Input(SquareInput):
    size: ImageSide = 256  # square H = W; also the ViT's img_size (position-embedding grid)
    rotation: float = Field(15.0, ge=0, le=180)  # RandomRotation(+-rotation deg), bilinear; 0 = off
    # the authors' training lists: every training image plus its horizontal flip as a new identity with
    # the mirrored side (ATRW 107 -> 214 classes, yak the same), flipped on read (``data.views``)
    flipped_copies: bool = True
    # test features [f(x), f(flip x)], L2-normalised (2 x D): the authors' ATRW evaluation; yak is off
    test_flip: bool = False


class Backbone(TimmBackbone):
    name: str = "vit_base_patch16_224"  # a timm VisionTransformer with a class token
    # the paper's in21k -> in1k weights; a local path / s3:// URI of a timm ViT state_dict (e.g. the
    # original ``jx_vit_base_p16_224-80ecf9dd.pth``) has its position embeddings resampled to the input
    # grid like the hub's. ``kwargs`` (patch_size, depth, embed_dim, ...) win over img_size and
    # drop_path_rate below.
    pretrained: str | bool | None = "vit_base_patch16_224.orig_in21k_ft_in1k"
    drop_path_rate: float = Field(0.1, ge=0, lt=1)  # stochastic depth, linearly spaced over the blocks
    classifier_bias: bool = True  # PAW-ViT's identity fc has a bias (BoT's has none)


class Batch(PKBatch):
    ids_per_batch: Count = 8  # P
    images_per_id: Count = 16  # K


class Optim(AdamOptim):
    lr: PositiveFloat = 8.5e-5  # AdamW, every parameter in one group
    weight_decay: NonNegativeFloat = 5e-4


class ViTSchedule(Schedule):
    """timm's ``CosineLRScheduler`` per epoch (``recipe.lr_schedule``)."""

    epochs: Count = 50
    warmup_epochs: NonNegativeFloat = 2.5  # linear from warmup_lr_init to lr (timm warmup_t)
    warmup_lr_init: NonNegativeFloat = 1.7e-7
    # timm's warmup_prefix: the cosine's t starts after the warm-up (True: the authors') or counts its epochs
    warmup_prefix: bool = True
    min_lr_ratio: float = Field(0.8, ge=0, le=1)  # cosine floor lr_min = ratio x lr
    cosine_epochs: int | None = Field(None, ge=1)  # timm t_initial; None: int(epochs - warmup_epochs)

    @property
    def t_initial(self) -> int:
        return self.cosine_epochs if self.cosine_epochs is not None else max(1, int(self.epochs - self.warmup_epochs))


class Losses(Section):
    label_smoothing: float = Field(0.2, ge=0, lt=1)
    triplet_margin: float = Field(0.4, ge=0)
    triplet_distance: Literal["cosine", "euclidean"] = "cosine"  # cosine: (1 - cos) / 2
    # the feature the triplet (and the test embedding) measures: ``pre_bn`` the authors' (pre-BN feature);
    # ``centred`` the pre-BN feature less the BN's mean (the batch's in training, the running mean at test):
    # from random weights that common component holds > 99 % of the feature (docs/methods.md)
    triplet_feature: Literal["pre_bn", "centred"] = "pre_bn"
    # the hard triplets (hardest negative closer than the hardest positive) only push the negative away
    # (Xuan et al. 2020; losses/triplet.py): False the authors' batch-hard loss; True keeps a network
    # from random weights from collapsing its batch (docs/methods.md)
    triplet_selective: bool = False
    id_weight: float = Field(1.0, ge=0)
    triplet_weight: float = Field(0.5, ge=0)


class ViTConfig(MethodConfig):
    input: Input = Field(default_factory=Input)
    backbone: Backbone = Field(default_factory=Backbone)
    batch: Batch = Field(default_factory=Batch)
    optim: Optim = Field(default_factory=Optim)
    schedule: ViTSchedule = Field(default_factory=ViTSchedule)
    losses: Losses = Field(default_factory=Losses)
