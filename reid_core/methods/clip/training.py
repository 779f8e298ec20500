"""Fine-tuning CLIP's image encoder (CLIP-FT, and CARE's phase 2 with one more loss): P x K batches, Adam
with biases at 2x lr, ``WarmupMultiStepLR`` (``recipe.lr_schedule``), label-smoothed CE on both heads +
batch-hard triplet on the three features."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from reid_core.losses.classification import identity_loss
from reid_core.losses.triplet import batch_hard_triplet_loss
from reid_core.methods.clip.config import ClipFTConfig, Losses
from reid_core.methods.clip.network import TRIPLET_FEATURES
from reid_core.methods.clip.recipe import lr_schedule
from reid_core.methods.contract import Stage, StageContext, StagePlan, set_trainable, unwrap
from reid_core.nn.heads import train_all_but_bnneck_biases
from reid_core.nn.schedules import per_epoch

# (model, the image branch's output, labels) -> (their weighted sum, the named unweighted losses to log)
ExtraLosses = Callable[[nn.Module, Mapping[str, torch.Tensor], torch.Tensor],
                       tuple[torch.Tensor, dict[str, torch.Tensor]]]


def reid_losses(losses: Losses, out: Mapping[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Unweighted: ``loss_id`` (CE on both heads, summed) and ``loss_triplet`` (summed over the three features)."""
    loss_id = sum(identity_loss(out[key], labels, losses.label_smoothing) for key in ("logits_cls", "logits_proj"))
    loss_triplet = sum(batch_hard_triplet_loss(out[key], labels, losses.triplet_margin, "euclidean")
                       for key in TRIPLET_FEATURES)
    return {"loss_id": loss_id, "loss_triplet": loss_triplet}


def parameter_groups(model: nn.Module, config: ClipFTConfig) -> list[dict]:
    """The trainable parameters in two groups, as CLIP-ReID's ``make_optimizer_2stage``: names with
    ``bias`` at ``lr x bias_lr_factor`` and ``bias_weight_decay``, the rest at ``lr`` and ``weight_decay``."""
    optim = config.optim
    named = [(name, p) for name, p in unwrap(model).named_parameters() if p.requires_grad]
    biases = [p for name, p in named if "bias" in name]
    weights = [p for name, p in named if "bias" not in name]
    groups = [{"params": weights, "lr": optim.lr, "weight_decay": optim.weight_decay, "name": "weights"},
              {"params": biases, "lr": optim.lr * optim.bias_lr_factor, "weight_decay": optim.bias_weight_decay,
               "name": "biases"}]
    return [group for group in groups if group["params"]]


def make_finetune_stage(
    config: ClipFTConfig,
    plan: StagePlan,
    *,
    branch: Callable[[nn.Module], nn.Module] = lambda net: net,
    extra_losses: ExtraLosses | None = None,
    on_start: Callable[[nn.Module, StageContext], None] | None = None,
) -> Stage:
    """The fine-tuning stage. ``branch(network)`` is the image branch (a ``ClipImageReID``) that trains;
    everything else in the network stays frozen. The network's forward on images returns the branch's
    output, so the step goes through the (DDP) wrapper."""
    losses = config.losses

    def trainable(model: nn.Module) -> None:
        net = unwrap(model)
        set_trainable(net.parameters(), False)
        train_all_but_bnneck_biases(branch(net))

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameter_groups(model, config), lr=config.optim.lr)

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], epoch: int):
        images = batch["image"]
        labels = batch["label"].to(images.device).long()
        out = model(images)
        parts = reid_losses(losses, out, labels)
        total = losses.id_weight * parts["loss_id"] + losses.triplet_weight * parts["loss_triplet"]
        if extra_losses is not None:
            weighted, extra = extra_losses(model, out, labels)
            total = total + weighted
            parts |= extra
        return total, {name: value.detach() for name, value in parts.items()}

    return Stage(plan=plan, optimizer=optimizer, step=step, trainable=trainable, on_start=on_start,
                 scheduler=per_epoch(lr_schedule(config)), precision=config.precision)
