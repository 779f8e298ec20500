"""How well PAW-ViT's part tokens segment the parts: the argmax over the K+1 ATM masks (the parts, then the
background) against the rows' part label maps merged to the K parts of the species' scheme, both at the
teacher's mask size (``parts.mask_size``; labels resized nearest), scored as a mean IoU over the K+1
classes (``evaluation.segmentation``). Rows without a part map are left out; without any, no score.
"""

from __future__ import annotations

import polars as pl
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from reid_core.data.dataset import ManifestDataset
from reid_core.evaluation.segmentation import chance_mean_iou, confusion_matrix, mean_iou
from reid_core.methods.contract import unwrap
from reid_core.methods.pawvit.config import PawViTConfig
from reid_core.methods.pawvit.targets import merge_table, species_scheme

PARTS_COLUMN = "parts_uri"


class PartsEvalTransform:
    """``(image, {key: Mask}) -> (eval-transformed image, {key: Mask of mask_size x mask_size})``."""

    def __init__(self, image_transform, mask_size: int) -> None:
        self.image_transform, self.mask_size = image_transform, mask_size

    def __call__(self, image, masks):
        size = [self.mask_size, self.mask_size]
        return self.image_transform(image), {key: TF.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST)
                                             for key, mask in masks.items()}


@torch.inference_mode()
def part_segmentation_scores(network: torch.nn.Module, config: PawViTConfig, rows: pl.DataFrame, column: str,
                             image_transform, *, batch_size: int = 64, device: torch.device | str = "cpu"
                             ) -> dict[str, float]:
    """``part_mIoU`` (K+1 classes, background included), ``part_mIoU_chance`` and ``part_mIoU_n_images``
    of the rows' images (read from ``column``) that have a part map; {} when none has."""
    if PARTS_COLUMN not in rows.columns:
        return {}
    rows = rows.filter(pl.col(PARTS_COLUMN).is_not_null())
    if rows.is_empty():
        return {}
    num_parts = config.parts.num_parts
    table = merge_table(species_scheme(rows, num_parts), num_parts).to(device)
    dataset = ManifestDataset(rows, PartsEvalTransform(image_transform, config.parts.mask_size), column=column,
                              masks={"parts": PARTS_COLUMN})
    net = unwrap(network)
    was_training = net.training
    net.eval()
    confusion = 0
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            predicted = net.part_masks(batch["image"].to(device)).argmax(dim=1)
            target = table[batch["parts"].to(device).clamp(0, 255)]
            confusion = confusion + confusion_matrix(predicted, target, num_parts + 1)
    finally:
        net.train(was_training)
    return {"part_mIoU": mean_iou(confusion), "part_mIoU_chance": chance_mean_iou(confusion),
            "part_mIoU_n_images": float(rows.height)}
