"""ARBase's config: the paper's recipe where the OpenAnimals summary states it, fast-reid's defaults (the
framework OpenAnimals builds on) where it is silent. Sections: input, backbone, batch, optim, schedule,
losses (the shared sections of ``methods.config`` with ARBase's defaults). Every default below is the
``paper`` preset; the ``cpu`` preset and the search space are in ``recipe.py``.

Sources, per entry:
- paper (OpenAnimals, ICCV 2025, arXiv 2410.00204): 384 x 384 square input; horizontal flip p 0.5 only
  (no random erasing, no AutoAug); ImageNet ResNet-50 with IBN and last stride 1; global + 2-part +
  3-part branches; GAP + Linear + BNNeck heads; triplet before and label-smoothed CE after the BNNeck;
  Adam + cosine annealing.
- fast-reid (JDAI-CV/fast-reid ``configs/Base-bagtricks.yml`` / ``Base-SBS.yml`` / ``Base-MGN.yml``), not
  stated in the summary: P x K = 16 x 4; Adam lr 3.5e-4, weight decay 5e-4; 60 epochs and
  eta_min 7.7e-7 of SBS's cosine schedule; triplet margin 0.3 (BoT), euclidean, hard mining; label
  smoothing 0.1; 256-d embeddings per head (MGN); bicubic resize; post-BN features at test time
  (``TEST.NECK_FEAT: after``). fast-reid's linear warm-up and SBS's 30 "delay" epochs are available
  (``schedule.warmup_epochs`` / ``schedule.delay_epochs``) but off: the summary names neither.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from reid_core.methods.config import (
    AdamOptim,
    Count,
    Factor,
    ImageSide,
    MethodConfig,
    NonNegativeFloat,
    NonNegativeInt,
    PKBatch,
    PositiveFloat,
    Probability,
    Section,
    SquareInput,
    TimmBackbone,
    WarmupSchedule,
)


class Input(SquareInput):
    size: ImageSide = 384  # square H = W (paper: [384, 384] instead of person re-ID's [256, 128])
    flip_p: Probability = 0.5  # paper: the only augmentation
    pad: NonNegativeInt = 0  # fast-reid's pad + random crop; 0 = off (paper: flip only)
    erasing_p: Probability = 0.0  # random erasing; 0 = off (paper: it hurts on animals)


class Backbone(TimmBackbone):
    name: str = "resnet50"  # timm name of a ResNet-family model (Bottleneck or BasicBlock)
    # pretrained: True (the paper's preset) loads the timm hub's default ImageNet weights into the convs and
    # the BN half of every IBN layer, the IN half starts at weight 1 / bias 0; a local path / s3:// URI may
    # hold a plain timm ResNet's state_dict (loaded like the hub's) or an IBN-a one with ``...bn1.IN.*`` /
    # ``...bn1.BN.*`` keys (XingangPan/IBN-Net's resnet50_ibn_a, or one of these trunks), loaded as is.
    ibn: bool = True  # IBN-a in layer1..layer3 (paper; False: the "w/o IBN" ablation)
    ibn_ratio: float = Field(0.5, gt=0, lt=1)  # share of bn1's channels that get InstanceNorm (IBN-Net)
    last_stride: Literal[1, 2] = 1  # layer4's stride (paper: 1)
    parts: tuple[int, ...] = (2, 3)  # horizontal-stripe branches besides the global one; () = "w/o MB"
    embed_dim: Count = 256  # per head (fast-reid MGN); Linear(C4 -> embed_dim) -> BNNeck
    neck_feat: Literal["after", "before"] = "after"  # test-time features: post-BN (fast-reid) or pre-BN

    @field_validator("parts")
    @classmethod
    def _parts(cls, parts: tuple[int, ...]) -> tuple[int, ...]:
        if any(p < 1 for p in parts):
            raise ValueError(f"every part count must be >= 1, got {parts}")
        return parts


class Batch(PKBatch):
    ids_per_batch: Count = 16  # P (fast-reid: IMS_PER_BATCH 64 / NUM_INSTANCE 4)
    images_per_id: Count = 4  # K


class Optim(AdamOptim):
    lr: PositiveFloat = 3.5e-4  # Adam (coupled L2 weight decay, as fast-reid's Adam)
    weight_decay: NonNegativeFloat = 5e-4


class Schedule(WarmupSchedule):
    epochs: Count = 60  # fast-reid SBS
    eta_min: NonNegativeFloat = 7.7e-7  # cosine floor (fast-reid SBS ETA_MIN_LR)
    warmup_epochs: NonNegativeInt = 0  # linear warm-up from warmup_factor * lr (fast-reid; off)
    warmup_factor: Factor = 0.1
    delay_epochs: NonNegativeInt = 0  # constant lr after the warm-up before the cosine (SBS: 30; off)


class Losses(Section):
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    triplet_margin: float = Field(0.3, ge=0)
    triplet_distance: Literal["euclidean", "cosine"] = "euclidean"
    id_weight: float = Field(1.0, ge=0)  # times the mean CE over the heads
    triplet_weight: float = Field(1.0, ge=0)  # times the mean triplet over the branches


class ARBaseConfig(MethodConfig):
    input: Input = Field(default_factory=Input)
    backbone: Backbone = Field(default_factory=Backbone)
    batch: Batch = Field(default_factory=Batch)
    optim: Optim = Field(default_factory=Optim)
    schedule: Schedule = Field(default_factory=Schedule)
    losses: Losses = Field(default_factory=Losses)
