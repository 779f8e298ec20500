"""The authors' two lr schedules, as factors of the base lr per engine epoch (0-based).

Both of the authors' loops step the scheduler at the *start* of each 1-based epoch, so engine epoch
``e`` trains at the authors' epoch ``e + 1``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence


def warmup_multistep_factor(epoch: int, milestones: Sequence[int], gamma: float, warmup_epochs: int,
                            warmup_factor: float) -> float:
    """CLIP-ReID's ``WarmupMultiStepLR`` (linear warm-up) at engine epoch ``epoch``:
    ``warmup_factor * (1 - a) + a`` with ``a = t / warmup_epochs`` while ``t < warmup_epochs``, times
    ``gamma ** (number of milestones <= t)``, where ``t = epoch + 1``."""
    t = epoch + 1
    warmup = 1.0
    if t < warmup_epochs:
        alpha = t / warmup_epochs
        warmup = warmup_factor * (1 - alpha) + alpha
    return warmup * gamma ** bisect_right(sorted(milestones), t)


def cosine_lr(epoch: int, lr: float, *, epochs: int, warmup_epochs: int, warmup_lr_init: float,
              min_lr: float) -> float:
    """CLIP-ReID's stage-1 ``CosineLRScheduler`` (timm: ``t_initial=epochs``, no warm-up prefix, one cycle)
    at engine epoch ``epoch`` (``t = epoch + 1``): linear from ``warmup_lr_init`` while ``t < warmup_epochs``,
    then ``min_lr + (lr - min_lr) * (1 + cos(pi t / epochs)) / 2``, ``min_lr`` from ``t = epochs`` on."""
    t = epoch + 1
    if t < warmup_epochs:
        return warmup_lr_init + t * (lr - warmup_lr_init) / warmup_epochs
    if t >= epochs:
        return min_lr
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * t / epochs))
