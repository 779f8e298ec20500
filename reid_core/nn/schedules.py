"""Learning-rate schedules: one builder for every method, on timm's schedulers.

A schedule here is a *factor curve*: engine epoch (0-based) -> lr / base lr, the same factor for every
param group (so a head at 10x the backbone's lr stays at 10x through warm-up and decay). The curves are
timm's ``CosineLRScheduler`` / ``MultiStepLRScheduler`` evaluated on a one-parameter probe optimiser
at base lr 1; timm's own warm-up would start every group at one absolute lr, which is why the real
optimiser is not handed to timm. ``per_epoch(curve)`` is what a ``Stage.scheduler`` returns: torch's
``LambdaLR``, stepped once per epoch by the engine, whose state dict (the epoch) resumes with a checkpoint.

``first_index`` is timm's index of engine epoch 0: 0 for timm's own loops, 1 for the authors' loops
(CLIP-ReID, CARE) that call ``scheduler.step(epoch)`` with 1-based epochs before each epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler

LrCurve = Callable[[int], float]  # engine epoch -> lr / base lr


def _timm_curve(scheduler_type: type, first_index: int = 0, **kwargs) -> LrCurve:
    """A timm scheduler's per-epoch value at base lr 1, read from a probe optimiser."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    # timm warns that a one-epoch cosine "will have no effect"; with one cycle it still decays to lr_min
    timm_logger = logging.getLogger(scheduler_type.__module__)
    level = timm_logger.level
    timm_logger.setLevel(logging.ERROR)
    try:
        scheduler = scheduler_type(probe, t_in_epochs=True, **kwargs)
    finally:
        timm_logger.setLevel(level)

    def curve(epoch: int) -> float:
        scheduler.step(epoch + first_index)
        return probe.param_groups[0]["lr"]

    return curve


def cosine(
    *,
    cycle_epochs: float,
    min_factor: float = 0.0,
    warmup_epochs: float = 0,
    warmup_start: float = 0.0,
    warmup_prefix: bool = False,
    delay_epochs: int = 0,
    first_index: int = 0,
) -> LrCurve:
    """timm's ``CosineLRScheduler`` (one cycle): linear warm-up from ``warmup_start`` over ``warmup_epochs``,
    then ``min + (1 - min) * (1 + cos(pi t / cycle_epochs)) / 2``, and ``min_factor`` from ``t = cycle_epochs``.
    ``warmup_prefix``: from ``t = warmup_epochs`` on the cosine runs on ``t - warmup_epochs`` (so it starts at
    1 and ends ``warmup_epochs`` later); else on ``t`` itself, the warm-up's epochs counted in its cycle.
    ``delay_epochs``: fast-reid SBS's constant lr between the warm-up and the cosine (no timm equivalent:
    the cosine's clock is held at its start during those epochs)."""
    timm_curve = _timm_curve(CosineLRScheduler, first_index, t_initial=cycle_epochs, lr_min=min_factor,
                             warmup_t=warmup_epochs, warmup_lr_init=warmup_start, warmup_prefix=warmup_prefix)
    if not delay_epochs:
        return timm_curve
    return lambda epoch: timm_curve(epoch - min(delay_epochs, max(0, epoch + first_index - warmup_epochs)))


def multistep(milestones: Sequence[int], gamma: float, *, first_index: int = 0) -> LrCurve:
    """``gamma ** (number of milestones <= t)`` at timm index ``t`` (torch's ``MultiStepLR`` convention).
    timm's ``MultiStepLRScheduler`` applies milestone m from ``t = m - 1`` on, hence the ``m + 1``."""
    return _timm_curve(MultiStepLRScheduler, first_index, decay_t=sorted(m + 1 for m in milestones),
                       decay_rate=gamma, warmup_prefix=False)


def warmup_multistep(milestones: Sequence[int], gamma: float, *, warmup_epochs: int, warmup_start: float,
                     first_index: int = 0) -> LrCurve:
    """CLIP-ReID's ``WarmupMultiStepLR``: a linear warm-up factor from ``warmup_start`` *times* the step decay.
    timm's warm-up replaces the decayed lr instead of multiplying it (they differ when a milestone falls
    inside the warm-up), so the product is taken of two timm curves: the warm-up alone and the decay."""
    warmup = _timm_curve(MultiStepLRScheduler, first_index, decay_t=[], warmup_t=warmup_epochs,
                         warmup_lr_init=warmup_start, warmup_prefix=False)
    decay = multistep(milestones, gamma, first_index=first_index)
    return lambda epoch: warmup(epoch) * decay(epoch)


def per_epoch(curve: LrCurve) -> Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]:
    """A ``Stage.scheduler`` the engine steps once per epoch: epoch e runs at each group's lr x curve(e)."""

    def scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        # a lambda: LambdaLR's state dict keeps nothing of it (only the epoch), whatever ``curve`` holds
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: curve(epoch))

    return scheduler
