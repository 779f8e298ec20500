"""How well part maps made from keypoints (``reid part-masks``) agree with exact part maps: per species,
the mean IoU over the K+1 classes (background included) of one manifest's ``parts_uri`` maps against
another's, pooled over all images (``reid_core.evaluation.segmentation``), with the same score for a
per-pixel guess at the exact maps' class frequencies (chance). Both maps are brought to ``--size`` x
``--size`` by nearest sampling at pixel centres (as ``reid part-masks`` samples the foreground) and merged
to the species' K parts (``reid_core.parts.schemes``; default K: the scheme's).

    python benchmarks/keypoint_part_maps.py --exact ~/.reid/data/synthetic/manifest.parquet \\
        --keypoint ~/.reid/data/synthetic/segmented-nocrop/parts-atrw/manifest.parquet [--size 64] [--k 4]
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl
import torch

from reid_core.data.dataset import read_label_map
from reid_core.evaluation.segmentation import chance_mean_iou, class_iou, confusion_matrix, mean_iou
from reid_core.parts.schemes import scheme_for


def label_map(uri: str, size: int) -> np.ndarray:
    return read_label_map(uri, (size, size)).numpy()


def agreement(exact: list[str], keypoint: list[str], species: str, size: int, k: int | None) -> dict:
    """Mean IoU of the keypoint maps against the exact maps of one species' images (paired lists of URIs)."""
    scheme = scheme_for(species)
    k = k or scheme.default_k
    confusion = 0
    for truth_uri, made_uri in zip(exact, keypoint, strict=True):
        truth = scheme.merge(label_map(truth_uri, size), k)
        made = scheme.merge(label_map(made_uri, size), k)
        confusion = confusion + confusion_matrix(torch.from_numpy(made), torch.from_numpy(truth), k + 1)
    return {"species": species, "k": k, "images": len(exact), "mIoU": mean_iou(confusion),
            "chance": chance_mean_iou(confusion),
            "per_class": dict(zip(("background", *scheme.group_names(k)), np.round(class_iou(confusion), 3).tolist(),
                                  strict=True))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", required=True, help="manifest whose parts_uri are the exact maps")
    parser.add_argument("--keypoint", required=True, help="manifest whose parts_uri are the keypoint-made maps")
    parser.add_argument("--size", type=int, default=64, help="compare at this side (reid part-masks: 64)")
    parser.add_argument("--k", type=int, default=None, help="parts per species (default: the scheme's)")
    args = parser.parse_args()
    exact = pl.read_parquet(args.exact).select("image_id", "species", pl.col("parts_uri").alias("exact"))
    made = pl.read_parquet(args.keypoint).select("image_id", pl.col("parts_uri").alias("made"))
    rows = exact.join(made, on="image_id").drop_nulls(["exact", "made"])
    for (species,), group in rows.group_by(["species"], maintain_order=True):
        print(agreement(group["exact"].to_list(), group["made"].to_list(), species, args.size, args.k))


if __name__ == "__main__":
    main()
