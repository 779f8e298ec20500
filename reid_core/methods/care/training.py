"""CARE's two phases as engine stages.

- ``prompt`` (phase 1, VDTDG; ``tuned=False``: the image encoder is frozen, its validation mAP constant):
  its dataset is the frozen image features of the training images (computed once, ``FrozenFeatures``),
  in random batches; the loss is ``L_img2txt + L_txt2img``; only the prompt learner trains, Adam with
  CLIP-ReID's stage-1 cosine schedule (``recipe.prompt_lr_schedule``).
- ``finetune`` (phase 2, tuned): its ``on_start`` fills the prototype bank unless the network already has
  one (a resume); then CLIP-FT's stage (``methods.clip.training``) plus ``i2p_weight x L_i2pCon``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import polars as pl
import torch
from torch import nn

from reid_core.losses.contrastive import image_text_contrastive, image_to_prototype_contrastive
from reid_core.methods.care.config import CareConfig
from reid_core.methods.care.features import FeatureDataset, FrozenFeatures
from reid_core.methods.care.network import CareNet
from reid_core.methods.care.prompts import tokenize_template
from reid_core.methods.care.prototypes import identity_means
from reid_core.methods.care.recipe import prompt_lr_schedule
from reid_core.methods.clip.training import make_finetune_stage
from reid_core.methods.contract import Stage, StageContext, StagePlan, set_trainable, unwrap
from reid_core.nn.schedules import per_epoch

DESCRIBE_BATCH = 256  # text features per forward when filling the prototype bank


def prompt_species(config: CareConfig, rows: pl.DataFrame) -> str:
    """``text.species``, or the one species of the training rows."""
    if config.text.species:
        return config.text.species
    species = rows["species"].unique().to_list() if "species" in rows.columns else []
    if len(species) != 1:
        raise ValueError(f"the training rows hold species {sorted(map(str, species))}: set text.species to the "
                         "word the prompt should end with")
    return str(species[0])


def set_template(config: CareConfig, net: CareNet, rows: pl.DataFrame) -> None:
    tokens = tokenize_template(config.text.prompt_tokens, prompt_species(config, rows), net.text.context_length)
    net.prompt.set_template(tokens.to(net.prompt.tokens.device))


def frozen_image_features(net: CareNet) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda images: net.image.encoder(images)["proj"]


@torch.no_grad()
def fill_prototypes(net: CareNet, features: torch.Tensor, labels: torch.Tensor, device: torch.device) -> None:
    """Algorithm 2: the image-specific text feature of every training image, averaged per identity."""
    was_training = net.training
    net.eval()
    try:
        texts = [net.describe(features[i:i + DESCRIBE_BATCH].to(device), labels[i:i + DESCRIBE_BATCH].to(device))
                 .float() for i in range(0, len(labels), DESCRIBE_BATCH)]
    finally:
        net.train(was_training)
    net.set_prototypes(identity_means(torch.cat(texts), labels.to(device), net.prototypes.shape[0]))


def make_prompt_stage(config: CareConfig, plan: StagePlan, network: nn.Module, cache: FrozenFeatures,
                      transform: Callable) -> Stage:
    phase = config.phase1

    def trainable(model: nn.Module) -> None:
        net = unwrap(model)
        set_trainable(net.parameters(), False)
        set_trainable(net.prompt.parameters(), True)

    def on_start(model: nn.Module, context: StageContext) -> None:
        set_template(config, unwrap(model), context.rows)

    def dataset(context: StageContext) -> FeatureDataset:
        net = unwrap(network)
        return FeatureDataset(*cache.get(frozen_image_features(net), net, context, transform))

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(unwrap(model).prompt.parameters(), lr=phase.lr, weight_decay=phase.weight_decay)

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], epoch: int):
        features, labels = batch["feature"], batch["label"].long()
        texts = model(image_features=features, labels=labels)
        loss_i2t, loss_t2i = image_text_contrastive(features, texts, labels, temperature=phase.temperature,
                                                    normalize=phase.similarity == "cosine")
        return loss_i2t + loss_t2i, {"loss_i2t": loss_i2t.detach(), "loss_t2i": loss_t2i.detach()}

    return Stage(plan=plan, optimizer=optimizer, step=step, trainable=trainable, on_start=on_start,
                 dataset=dataset, scheduler=per_epoch(prompt_lr_schedule(config)),
                 precision=config.precision)


def make_finetune_stage_with_prototypes(config: CareConfig, plan: StagePlan, cache: FrozenFeatures,
                                        transform: Callable) -> Stage:
    losses = config.losses

    def on_start(model: nn.Module, context: StageContext) -> None:
        net = unwrap(model)
        if bool(net.prototypes_ready):  # kept with the model's state: a resume must not recompute them
            return
        # Normally the encoder is still the frozen one here (phase 2 has not trained yet), so the cached
        # features are the ones phase 1 learnt on.
        set_template(config, net, context.rows)
        features, labels = cache.get(frozen_image_features(net), net, context, transform)
        fill_prototypes(net, features, labels, context.device)

    def i2p(model: nn.Module, out: Mapping[str, torch.Tensor], labels: torch.Tensor):
        loss = image_to_prototype_contrastive(out["proj"], unwrap(model).prototypes, labels,
                                              temperature=losses.i2p_temperature)
        return losses.i2p_weight * loss, {"loss_i2p": loss}

    return make_finetune_stage(config, plan, branch=lambda net: net.image, extra_losses=i2p, on_start=on_start)
