"""CARE's config: the CLIP family's sections (``methods.clip.config``: input, backbone and the phase-2
fine-tuning batch / optim / schedule / losses) plus the text side (``text``: the VDTDG prompt), its
training (``phase1``) and the image-to-prototype loss. Defaults are the ``paper`` preset.

Sources (``shared/papers/care-clip-prototypes-supplementary.md``; ``shared/reference/algorithms.md``
section 3; the authors' code ywu840/CARE on CLIP-ReID):
- VDTDG (the authors' ``PromptLearner``): ``"A photo of a X X X X <species>."``, the X's replaced by
  w = 4 learnable context tokens per identity (N(0, 0.02)) plus one image-conditioned shift added to all
  of them, from a meta-net ``Linear(E -> E/16) -> ReLU -> Linear(E/16 -> D)`` on the frozen image
  encoder's projected [CLS] (supplementary Table 1: w = 4 best of {2, 4, 8, 16});
- phase 1 on image features computed once with the frozen encoder (validation transforms), random
  batches, ``L_img2txt + L_txt2img``; only the prompt learner trains (gradients flow through the frozen
  text encoder);
- the prototypes: per training identity the mean of its images' image-specific text features,
  unnormalised, computed once before phase 2 and static;
- phase 2: ``0.25 x sum_2 CE_ls + 1.0 x sum_3 triplet + 1.0 x L_i2pCon``; L_i2pCon is the cosine (T = 1)
  contrastive loss of each image's projection against the prototypes of the identities in its batch.

Where the code and the paper disagree, or the code cannot run the paper's loss:
- the released SupCon returns ``exp(cos)`` instead of the paper's supervised contrastive losses
  (``losses.contrastive``). We implement the paper's, in CLIP-ReID's form (raw dot products, T = 1:
  ``phase1.similarity`` / ``phase1.temperature``; the authors normalise first, ``similarity=cosine``).
- CARE's ATRW stage 1 runs batches of **1** image for 10 epochs (Adam 4.5e-4, 5 warm-up epochs from 1e-4,
  cosine to 1e-6). With one image per batch the paper's losses are identically 0 (a softmax over one
  candidate), so phase 1 defaults to CLIP-ReID's stage 1, the recipe CARE's code was forked from:
  batches of 64, Adam lr 3.5e-4, weight decay 1e-4, 120 epochs, 5 warm-up epochs from 1e-5, cosine to 1e-6.
- the triplet margin: 0.7 (paper) vs 0.9 (code), see ``methods.clip.config``.
- Algorithm 1 writes shared tokens ``v_1..v_w`` plus "static textual tokens with the identity label";
  the code learns one context per identity (as CLIP-ReID) and adds the meta-net shift; we follow the code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reid_core.methods.clip.config import ClipFTConfig, Losses
from reid_core.methods.config import Section


class Text(Section):
    prompt_tokens: int = Field(4, ge=1)  # w: learnable context tokens (the X's)
    species: str | None = None  # the prompt's last word; None: the training rows' species ("tiger")
    meta_hidden_ratio: int = Field(16, ge=1)  # meta-net hidden width = image feature dim // this
    context_init_std: float = Field(0.02, gt=0)


class Phase1(Section):
    """VDTDG training on the cached frozen image features (the tuner does not count it)."""

    epochs: int = Field(120, ge=1)
    batch_size: int = Field(64, ge=2)  # random batches; >= 2, or the contrastive losses are constant
    lr: float = Field(3.5e-4, gt=0)  # Adam
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: int = Field(5, ge=0)
    warmup_lr_init: float = Field(1e-5, ge=0)
    min_lr: float = Field(1e-6, ge=0)
    similarity: Literal["dot", "cosine"] = "dot"  # of image and text features in L_img2txt / L_txt2img
    temperature: float = Field(1.0, gt=0)


class CareLosses(Losses):
    i2p_weight: float = Field(1.0, ge=0)  # L_i2pCon (CARE's I2T_LOSS_WEIGHT)
    i2p_temperature: float = Field(1.0, gt=0)


class CareConfig(ClipFTConfig):
    text: Text = Field(default_factory=Text)
    phase1: Phase1 = Field(default_factory=Phase1)
    losses: CareLosses = Field(default_factory=CareLosses)
