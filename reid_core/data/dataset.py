"""A torch Dataset over manifest rows: images are read through the filesystem abstraction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow.fs as pafs
import torch
from torch.utils.data import Dataset

from reid_core.data import io as rio


@dataclass(frozen=True)
class ImageRows:
    """The rows to read and the column to read them from; ``left_out`` rows had no masked image."""

    rows: pl.DataFrame
    column: str
    left_out: int = 0


def select_images(df: pl.DataFrame, use_masked: bool = True) -> ImageRows:
    """Masked images when segmentation produced any, never mixed with originals: rows whose
    segmentation failed (no ``masked_uri``) are left out and counted. Original images when masks are
    not wanted or the manifest has none at all."""
    if not use_masked or "masked_uri" not in df.columns or df["masked_uri"].null_count() == df.height:
        return ImageRows(df, "image_uri")
    kept = df.filter(pl.col("masked_uri").is_not_null())
    return ImageRows(kept, "masked_uri", df.height - kept.height)


def entity_codes(df: pl.DataFrame, column: str = "entity") -> tuple[np.ndarray, list[str]]:
    """Contiguous integer labels 0..C-1 (sorted entity names) and the names they stand for."""
    names, codes = np.unique(df[column].cast(pl.String).fill_null("").to_numpy(), return_inverse=True)
    return codes.astype(np.int64), names.tolist()


SIDE_CODES = {"left": 0, "right": 1}  # anything else (unknown, null) is -1: ignored by orientation losses


def side_codes(df: pl.DataFrame) -> np.ndarray:
    return np.array([SIDE_CODES.get(s, -1) for s in df["side"].to_list()], dtype=np.int64)


class ManifestDataset(Dataset):
    """Items are ``{"image", "label", "side", "index"}``; ``label`` indexes the sorted entities."""

    def __init__(
        self,
        df: pl.DataFrame,
        transform: Callable | None = None,
        *,
        column: str = "image_uri",
        filesystem: pafs.FileSystem | None = None,
        cache: bool = False,
    ) -> None:
        self.uris = df[column].to_list()
        # Decoded images kept in memory across epochs: for small datasets where decoding dominates.
        self._cache: dict[int, object] | None = {} if cache else None
        self.labels, self.label_names = entity_codes(df)
        self.sides = side_codes(df)
        self.transform = transform
        self.filesystem = filesystem

    def __len__(self) -> int:
        return len(self.uris)

    def __getitem__(self, index: int) -> dict:
        if self._cache is not None and index in self._cache:
            image = self._cache[index]
        else:
            image = rio.read_image(self.uris[index], self.filesystem)
            if self._cache is not None:
                self._cache[index] = image
        image = self.transform(image) if self.transform else image
        return {
            "image": image,
            "label": torch.tensor(self.labels[index]),
            "side": torch.tensor(self.sides[index]),
            "index": index,
        }
