"""The exponential logarithmic loss (Wong et al., MICCAI 2018) as PAW-ViT distils part masks with it.

For predictions ``p`` and one-hot targets ``t`` of shape (B, C, H, W)::

    Dice_bc  = (2 sum_x p t + eps) / (sum_x (p + t) + eps)
    L_Dice   = mean_{b,c} (-ln max(Dice_bc, dice_floor)) ^ gamma_dice
    w_c      = sqrt(sum_k f_k / f_c)             f_c: pixels of class c in the batch's targets
    L_Cross  = mean_{b,x} sum_c w_c t (-ln p_c(x)) ^ gamma_cross
    L        = w_dice L_Dice + w_cross L_Cross

as the authors' ``ExponentialLogarithmicLoss`` computes it (Dice per image and class, absent classes
included; class weights from each batch). A class with no pixel in the batch gets weight 0 (it has
no ``t`` to weigh; sqrt(sum / 0) would turn the sum into NaN). ``softmax=True`` turns ``p`` into
probabilities over the C channels first (the authors pass their sigmoid masks through a softmax).

``dice_floor``: the authors clamp Dice at 1e-8 before the log (their ``ExponentialLogarithmicLoss``);
the paper's formula has no floor (0 here). The floor binds on a class absent from an image (t = 0):
its Dice is eps / (sum p + eps), under 1e-8 once the predicted mass sum p exceeds 100 pixels (with
eps = 1e-6), and the clamped term is then the constant (-ln 1e-8) ^ gamma_dice without gradient,
where the unclamped one keeps pushing the absent class's mass down.
"""

from __future__ import annotations

import torch


def class_weights(targets: torch.Tensor) -> torch.Tensor:
    """(C,) inverse-frequency weights sqrt(sum_k f_k / f_c) of one-hot (B, C, H, W) targets; 0 if f_c = 0."""
    frequency = targets.sum(dim=(0, 2, 3))
    weights = (frequency.sum() / frequency.clamp_min(1e-12)).sqrt()
    return torch.where(frequency > 0, weights, torch.zeros_like(weights))


def exp_log_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    *,
    w_dice: float = 0.5,
    w_cross: float = 0.5,
    gamma_dice: float = 1.2,
    gamma_cross: float = 1.2,
    softmax: bool = True,
    eps: float = 1e-6,
    dice_floor: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss and its two terms (``dice``, ``cross``, unweighted) of (B, C, H, W) predictions."""
    if predictions.shape != targets.shape or predictions.ndim != 4:
        raise ValueError(f"predictions and targets must be equal (B, C, H, W), got {tuple(predictions.shape)} "
                         f"and {tuple(targets.shape)}")
    # float32 even under autocast: logs and fractional powers of probabilities
    probabilities = predictions.float().softmax(dim=1) if softmax else predictions.float()
    targets = targets.float()
    intersection = (probabilities * targets).sum(dim=(2, 3))
    dice = (2 * intersection + eps) / (probabilities.sum(dim=(2, 3)) + targets.sum(dim=(2, 3)) + eps)
    # dice >= eps / (sum p + eps) > 0; clamp_min passes no gradient to values under the floor
    dice_term = (-dice.clamp_min(dice_floor).log()).clamp_min(0).pow(gamma_dice).mean()
    log_loss = (-probabilities.clamp_min(1e-12).log()).clamp_min(0).pow(gamma_cross)
    weights = class_weights(targets)[None, :, None, None]
    cross_term = (weights * targets * log_loss).sum(dim=1).mean()
    total = w_dice * dice_term + w_cross * cross_term
    return total, {"dice": dice_term, "cross": cross_term}
