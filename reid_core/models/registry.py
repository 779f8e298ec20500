"""Methods by name. A method owns everything the generic engine, tuner and workflows must not know.

The engine only ever calls the ``Method`` interface below; ``tune_dve.py`` is the tune pipeline with
``method="dve"``. Register a method by adding it to ``METHODS`` in its own module's import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn


@dataclass
class Stage:
    """One training stage: what to optimise, how, for how long, and the loss of one batch.

    ``step(model, batch, epoch)`` returns the scalar loss and a dict of floats to log.
    ``batch`` is what the training DataLoader yields: ``{"image": B x 3 x H x W, "label": B,
    "side": B (0 left, 1 right, -1 unknown), "index": B}``.
    """

    name: str
    epochs: int
    optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    scheduler: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler] | None
    step: Callable[[nn.Module, Mapping[str, torch.Tensor], int], tuple[torch.Tensor, dict[str, float]]]
    on_epoch_start: Callable[[nn.Module, int], None] | None = None


class Method(Protocol):
    name: str

    def default_config(self, **overrides: Any) -> Any:
        """The typed config with the paper's defaults, ``overrides`` applied (unknown keys raise)."""

    def build(self, config: Any, num_classes: int) -> nn.Module:
        """The network for ``num_classes`` training identities."""

    def train_transform(self, config: Any) -> Callable:
        """PIL image -> tensor for training (augmentation included)."""

    def eval_transform(self, config: Any) -> Callable:
        """PIL image -> tensor for feature extraction."""

    def stages(self, config: Any, model: nn.Module, steps_per_epoch: int) -> list[Stage]:
        """The training stages in order (most methods have one)."""

    def embed(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Test-time embeddings (L2-normalised), e.g. flip-concatenated."""

    def search_space(self, trial: Any, bounds: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Sample config overrides from an Optuna trial (define-by-run); ``bounds`` override ranges."""


@dataclass
class MethodRegistry:
    methods: dict[str, Method] = field(default_factory=dict)

    def register(self, method: Method) -> Method:
        self.methods[method.name] = method
        return method

    def get(self, name: str) -> Method:
        _import_builtin_methods()
        if name not in self.methods:
            raise KeyError(f"unknown method {name!r}; available: {', '.join(sorted(self.methods))}")
        return self.methods[name]

    def names(self) -> list[str]:
        _import_builtin_methods()
        return sorted(self.methods)


METHODS = MethodRegistry()


def _import_builtin_methods() -> None:
    # Imported lazily: building the registry must not import every backbone library up front.
    from reid_core.models import dve  # noqa: F401


def get_method(name: str) -> Method:
    return METHODS.get(name)
