"""How good are the masks: IoU against reference masks (the synthetic species' ``ref_mask_uri``, or a
dataset's annotations), aggregated per segmentation method and fusion criterion."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl

from reid_core.data import files as io
from reid_core.segmentation.masking import mask_from_png

SUMMARY_SCHEMA = {"method": pl.String, "criterion": pl.String, "n": pl.UInt32, "n_missing": pl.UInt32,
                  "mean_iou": pl.Float64, "median_iou": pl.Float64, "frac_iou_ge_0_5": pl.Float64}


def mask_iou(mask: np.ndarray, reference: np.ndarray) -> float:
    """IoU of two boolean masks of one shape; two empty masks agree perfectly (1.0)."""
    if mask.shape != reference.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the reference's {reference.shape}")
    union = np.logical_or(mask, reference).sum()
    return float(np.logical_and(mask, reference).sum() / union) if union else 1.0


def score_manifest(manifest: pl.DataFrame, mask_col: str = "mask_uri", ref_col: str = "ref_mask_uri",
                   filesystem=None) -> pl.DataFrame:
    """The manifest with a ``mask_iou`` column: null where a row has no mask (a failed segmentation) or no
    reference."""
    for column in (mask_col, ref_col):
        if column not in manifest.columns:
            raise ValueError(f"the manifest has no {column} column: run the segment pipeline first"
                             if column == mask_col else f"the manifest has no {column} column: quality needs "
                             "reference masks (the synthetic species has them)")
    scores = []
    for row in manifest.select("image_id", mask_col, ref_col).iter_rows(named=True):
        if not row[mask_col] or not row[ref_col]:
            scores.append(None)
            continue
        mask = mask_from_png(io.read_image(row[mask_col], filesystem, mode="L"))
        reference = mask_from_png(io.read_image(row[ref_col], filesystem, mode="L"))
        if mask.shape != reference.shape:
            raise ValueError(f"row {row['image_id']}: mask {row[mask_col]} is {mask.shape[1]}x{mask.shape[0]}, "
                             f"reference {row[ref_col]} {reference.shape[1]}x{reference.shape[0]}: "
                             "rerun segmentation on the original images")
        scores.append(mask_iou(mask, reference))
    return manifest.with_columns(pl.Series("mask_iou", scores, dtype=pl.Float64))


def summarize(scored: pl.DataFrame, method_col: str = "seg_method", criterion_col: str = "seg_criterion",
              iou_col: str = "mask_iou") -> pl.DataFrame:
    """One row per (method, criterion): n scored, n_missing (no mask or no reference), mean and median IoU,
    and the fraction with IoU >= 0.5. A missing method or criterion column groups as null."""
    table = scored.select(
        (pl.col(method_col) if method_col in scored.columns else pl.lit(None)).cast(pl.String).alias("method"),
        (pl.col(criterion_col) if criterion_col in scored.columns else pl.lit(None)).cast(pl.String)
        .alias("criterion"),
        pl.col(iou_col).cast(pl.Float64).alias("iou"),
    )
    iou = pl.col("iou")
    return (
        table.group_by("method", "criterion")
        .agg(
            iou.count().cast(pl.UInt32).alias("n"),
            iou.null_count().cast(pl.UInt32).alias("n_missing"),
            iou.mean().alias("mean_iou"),
            iou.median().alias("median_iou"),
            pl.when(iou.count() > 0).then((iou >= 0.5).sum() / iou.count()).alias("frac_iou_ge_0_5"),
        )
        .sort("method", "criterion", nulls_last=True)
        .cast(SUMMARY_SCHEMA)
    )


def summarize_masks(records: Iterable[tuple[str, str | None, np.ndarray | None, np.ndarray]]) -> pl.DataFrame:
    """``summarize`` for masks in memory: (method, criterion, mask or None, reference) per image."""
    rows = [{"seg_method": method, "seg_criterion": criterion,
             "mask_iou": None if mask is None else mask_iou(mask, reference)}
            for method, criterion, mask, reference in records]
    frame = pl.DataFrame(rows, schema={"seg_method": pl.String, "seg_criterion": pl.String, "mask_iou": pl.Float64})
    return summarize(frame)
