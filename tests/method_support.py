"""Helpers for the tests that drive a method's network and stages, directly or through the engine."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from reid_core.methods.registry import get_method


def tiny_overrides(name: str, epochs: int) -> dict:
    """A method's ``cpu`` preset shrunk to the tiny fixture (10 individuals x 4 images): epochs and
    batches, set through the keys the method itself declares."""
    method = get_method(name)
    overrides = {method.epochs_key: epochs} if method.epochs_key else {}  # None: nothing to train
    for plan in method.plan(method.config("cpu", overrides)):
        sizes = (4, 2) if plan.batches.kind == "pk" else (8,)
        overrides |= dict(zip(plan.batch_keys, sizes, strict=True))
    return overrides


def tiny_batch(classes: int = 4, per_class: int = 4, sides: Sequence[int] | None = None,
               size: int = 64) -> dict[str, torch.Tensor]:
    """A fixed random batch as the engine feeds it: ``per_class`` images of each of ``classes`` labels."""
    gen = torch.Generator().manual_seed(0)
    n = classes * per_class
    return {
        "image": torch.randn(n, 3, size, size, generator=gen),
        "label": torch.arange(n) // per_class,
        "side": torch.tensor(sides) if sides is not None else torch.zeros(n, dtype=torch.long),
        "index": torch.arange(n),
    }


class FakeDDP(nn.Module):
    """Stands in for DistributedDataParallel: forwards through ``module`` and counts the calls."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.module(*args, **kwargs)
