"""The frozen image features CARE's phase 1 trains on and its prototypes are made from: every training
image once through the frozen encoder with the eval transform (as the authors' ``train_loader_stage1``),
in the order and with the labels of the engine's training dataset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from reid_core.data.dataset import ManifestDataset
from reid_core.methods.contract import StageContext

BATCH_SIZE = 64


class FeatureDataset(Dataset):
    """Items ``{"feature", "label", "index"}`` over precomputed features (row ``i`` = training image ``i``)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"feature": self.features[index], "label": self.labels[index], "index": index}


@torch.no_grad()
def encode_rows(encode: Callable[[torch.Tensor], torch.Tensor], module: nn.Module, context: StageContext,
                transform: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, E) on the CPU, labels (N,)) of the training rows; ``module`` is in eval mode meanwhile."""
    dataset = ManifestDataset(context.rows, transform, column=context.image_column)
    was_training = module.training
    module.eval()
    try:
        chunks = [encode(batch["image"].to(context.device)).float().cpu()
                  for batch in DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=False)]
    finally:
        module.train(was_training)
    return torch.cat(chunks), torch.as_tensor(dataset.labels, dtype=torch.long)


@dataclass
class FrozenFeatures:
    """Computed once per run and shared by the two phases; ``None`` until first asked."""

    features: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def get(self, encode: Callable[[torch.Tensor], torch.Tensor], module: nn.Module, context: StageContext,
            transform: Callable) -> tuple[torch.Tensor, torch.Tensor]:
        if self.features is None:
            self.features, self.labels = encode_rows(encode, module, context, transform)
        return self.features, self.labels
