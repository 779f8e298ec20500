"""Training views: the training rows as a method trains on them, without writing files."""

from __future__ import annotations

import polars as pl

FLIP_COLUMN = "hflip"  # True: the dataset mirrors the image (and its label maps) when it reads the row
FLIPPED_SUFFIX = "~flipped"
MIRRORED_SIDE = {"left": "right", "right": "left"}


def with_flipped_copies(rows: pl.DataFrame) -> pl.DataFrame:
    """The rows plus a horizontally flipped copy of each as a new identity with the mirrored side.

    PAW-ViT's authors train on ATRW and yak this way (their training lists hold every image and its
    offline flip, the flip as identity id + N with the flipped direction label); here the flip happens
    on read (``ManifestDataset``). A mirrored flank is not the animal's other flank, hence new identities.
    """
    if FLIP_COLUMN in rows.columns:
        raise ValueError("the rows already carry flipped copies")
    flipped = rows.with_columns(
        (pl.col("entity").cast(pl.String) + FLIPPED_SUFFIX).alias("entity"),
        (pl.col("image_id").cast(pl.String) + FLIPPED_SUFFIX).alias("image_id"),
        pl.col("side").replace(MIRRORED_SIDE).alias("side"),
        pl.lit(True).alias(FLIP_COLUMN),
    )
    return pl.concat([rows.with_columns(pl.lit(False).alias(FLIP_COLUMN)), flipped], how="vertical_relaxed")
