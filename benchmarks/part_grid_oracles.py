"""What part mIoU masks on a ViT's patch grid can reach: PAW-ViT's part masks are one value per patch and
token, upsampled bilinearly to the mask size (its ATM decoder). Two oracles on that grid, scored against
a split's part maps the way PAW-ViT's ``part_mIoU`` is (``reid_core/methods/pawvit/evaluation.py``: maps
merged to the species' K parts, background last, resized nearest to the mask size; mean IoU over the
K+1 classes, pooled), each upsampled bilinearly (align_corners=False, as the ATM), then argmax:

- ``area``: each class's area fraction in each patch (the map at the input size): a smooth, patch-wise
  guess of where the parts are;
- ``fitted``: per-image grid values fitted to the map (class-balanced cross-entropy through the same
  upsampling, Adam): how sharp a boundary the grid allows when every patch's value is set just so.

One JSON line per species and input size.

    python benchmarks/part_grid_oracles.py [--manifest M] [--species tiger,yak] [--sizes 64,128,256] \\
        [--patch 8] [--k 4] [--split test]

``--patch``: input pixels per grid cell (the `cpu` presets' stem: 8, an 8 x 8 grid at 64 px; the `paper`
presets' ViT-B/16: 16). The mask size is the input's / 4 (the presets' ``parts.mask_size``).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from reid_core.data import files as rio
from reid_core.evaluation.segmentation import chance_mean_iou, confusion_matrix, mean_iou
from reid_core.methods.pawvit.targets import merge_table, species_scheme
from reid_core.settings import get_settings


def resized(channels: torch.Tensor, side: int) -> torch.Tensor:
    return F.interpolate(channels[None, None].float(), size=(side, side), mode="nearest")[0, 0].long()


def upsampled(grid_values: torch.Tensor, mask_size: int) -> torch.Tensor:
    return F.interpolate(grid_values, size=(mask_size, mask_size), mode="bilinear", align_corners=False)


def fitted_grid(targets: torch.Tensor, classes: int, grid: int, steps: int = 600) -> torch.Tensor:
    """(N, C, grid, grid) values whose upsampled argmax best matches the (N, m, m) targets."""
    weights = 1.0 / torch.bincount(targets.flatten(), minlength=classes).float().clamp_min(1)
    values = torch.zeros(len(targets), classes, grid, grid, requires_grad=True)
    optimiser = torch.optim.Adam([values], lr=0.1)
    for _ in range(steps):
        loss = F.cross_entropy(upsampled(values, targets.shape[-1]) * 5, targets, weight=weights / weights.sum())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return values.detach()


def grid_oracles(uris: list[str], table: torch.Tensor, k: int, size: int, patch: int) -> dict[str, float]:
    """Both oracles' pooled mIoU over the images (their part maps' URIs), and chance, at one input size."""
    mask_size, grid = size // 4, size // patch
    targets, fractions = [], []
    for uri in uris:
        # at its own size, then torch's nearest: the targets PAW-ViT's evaluation resizes
        channels = table[torch.from_numpy(np.array(rio.read_image(uri, mode=""), dtype=np.int64)).clamp(0, 255)]
        targets.append(resized(channels, mask_size))
        onehot = F.one_hot(resized(channels, size), k + 1).permute(2, 0, 1).float()[None]
        fractions.append(F.adaptive_avg_pool2d(onehot, grid)[0])
    targets = torch.stack(targets)
    scores = {}
    for name, values in (("area", torch.stack(fractions)), ("fitted", fitted_grid(targets, k + 1, grid))):
        confusion = confusion_matrix(upsampled(values, mask_size).argmax(1), targets, k + 1)
        scores[f"{name}_mIoU"] = mean_iou(confusion)
    return scores | {"chance": chance_mean_iou(confusion)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default=None,
                        help="default: $REID_HOME/data/synthetic/segmented-nocrop/manifest.parquet")
    parser.add_argument("--species", default="tiger,yak")
    parser.add_argument("--sizes", default="64,128,256", help="input sides to score")
    parser.add_argument("--patch", type=int, default=8, help="input pixels per grid cell")
    parser.add_argument("--k", type=int, default=4, help="parts (the cpu presets': 4)")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    manifest = args.manifest or str(get_settings().synthetic_dir / "segmented-nocrop" / "manifest.parquet")
    rows = pl.read_parquet(manifest).filter(pl.col("split") == args.split, pl.col("parts_uri").is_not_null())
    for species in args.species.split(","):
        group = rows.filter(pl.col("species") == species)
        if group.is_empty():
            raise SystemExit(f"{manifest}: no {args.split} rows of {species!r} with a parts_uri")
        table = merge_table(species_scheme(group, args.k), args.k)
        for size in map(int, args.sizes.split(",")):
            score = grid_oracles(group["parts_uri"].to_list(), table, args.k, size, args.patch)
            print(json.dumps({"species": species, "k": args.k, "images": group.height, "input": size,
                              "grid": size // args.patch, "mask_size": size // 4, **score}))


if __name__ == "__main__":
    main()
