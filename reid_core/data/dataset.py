"""A torch Dataset over manifest rows: images (and label maps read with them) through the filesystem
abstraction."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow.fs as pafs
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from reid_core.data import files as rio
from reid_core.data.views import FLIP_COLUMN


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


def check_label_map_frames(images: ImageRows, mask_columns: Mapping[str, str], source: str) -> None:
    """Refuse label maps that would not line up with the images read. A map made by
    workflows/part_masks.py (its ``<name>_config`` is set) is on the frame of the row's masked image; any
    other (e.g. the synthetic species' exact part maps) is on the original photo's. They differ only
    where segmentation cropped the masked image to the animal."""
    from reid_core.segmentation.masking import cropped_by_segmentation

    if not mask_columns or "seg_config" not in images.rows.columns:
        return
    on_masked = images.column == "masked_uri"
    for column in mask_columns.values():
        config = column.removesuffix("_uri") + "_config"
        wanted = ["image_id", "masked_uri", "seg_status", "seg_config", *([config] if config in images.rows.columns else [])]
        wrong = [row["image_id"] for row in images.rows.select(wanted).iter_rows(named=True)
                 if cropped_by_segmentation(row) and (row.get(config) is None) == on_masked]
        if not wrong:
            continue
        if on_masked:
            raise ValueError(
                f"{len(wrong)} rows of {source} (e.g. {wrong[0]!r}) have {column} maps on the original photo's "
                "frame, but their masked images are cropped to the animal (segment.py --crop): they would not "
                f"line up. Make the maps on the cropped frame (workflows/part_masks.py --manifest {source}), "
                "segment with --no-crop, or train with --original-images")
        raise ValueError(
            f"{len(wrong)} rows of {source} (e.g. {wrong[0]!r}) have {column} maps made on the cropped frame of "
            "their masked images (workflows/part_masks.py), but training reads the original photos "
            "(--original-images): they would not line up. Train on the masked images (drop --original-images)")


def images_to_evaluate(rows: pl.DataFrame, use_masked: bool, split: str) -> ImageRows:
    """``select_images`` for an evaluation, warning how many ``split`` rows it leaves out."""
    images = select_images(rows, use_masked)
    if images.left_out:
        warnings.warn(f"{images.left_out} {split!r} rows have no masked image (their segmentation failed): "
                      "left out of the evaluation", stacklevel=3)
    return images


def entity_codes(df: pl.DataFrame, column: str = "entity") -> tuple[np.ndarray, list[str]]:
    """Contiguous integer labels 0..C-1 (sorted entity names) and the names they stand for."""
    names, codes = np.unique(df[column].cast(pl.String).fill_null("").to_numpy(), return_inverse=True)
    return codes.astype(np.int64), names.tolist()


SIDE_CODES = {"left": 0, "right": 1}  # anything else (unknown, null) is -1: ignored by orientation losses


def side_codes(df: pl.DataFrame) -> np.ndarray:
    return np.array([SIDE_CODES.get(s, -1) for s in df["side"].to_list()], dtype=np.int64)


LABEL_MAP_MODES = ("L", "P", "I", "I;16")  # one integer label per pixel


def read_label_map(uri: str, size: tuple[int, int], filesystem: pafs.FileSystem | None = None) -> tv_tensors.Mask:
    """A label map (PNG, one label per pixel) as a (H, W) ``Mask``, resized (nearest) to the image's
    ``size`` (W, H) so one geometric transform moves image and labels together."""
    label_map = rio.read_image(uri, filesystem, mode="")
    if label_map.mode not in LABEL_MAP_MODES:
        raise ValueError(f"{uri} is a {label_map.mode} image, not a label map: write one label per pixel "
                         f"(PNG mode {' / '.join(LABEL_MAP_MODES)})")
    if label_map.size != size:
        label_map = label_map.resize(size, Image.Resampling.NEAREST)
    return tv_tensors.Mask(torch.from_numpy(np.array(label_map, dtype=np.int64)))


class ManifestDataset(Dataset):
    """Items are ``{"image", "label", "side", "index"}``; ``label`` indexes the sorted entities.

    ``masks`` maps item keys to manifest columns of label maps (e.g. ``{"parts": "parts_uri"}``): each is
    read with its image and the transform is called as ``transform(image, masks)`` so that torchvision
    v2 moves both together (masks with nearest interpolation, untouched by colour and dtype steps); the
    items then carry each map as a (H, W) int64 tensor. Rows with ``hflip`` true (a training view's
    flipped copies, ``data.views``) are mirrored, with their label maps, when read.
    """

    def __init__(
        self,
        df: pl.DataFrame,
        transform: Callable | None = None,
        *,
        column: str = "image_uri",
        masks: Mapping[str, str] | None = None,
        filesystem: pafs.FileSystem | None = None,
        cache: bool = False,
    ) -> None:
        self.uris = df[column].to_list()
        self.mask_uris = {key: df[mask_column].to_list() for key, mask_column in (masks or {}).items()}
        self.hflips = df[FLIP_COLUMN].to_list() if FLIP_COLUMN in df.columns else [False] * df.height
        # Decoded images kept in memory across epochs: for small datasets where decoding dominates.
        self._cache: dict[int, object] | None = {} if cache else None
        self.labels, self.label_names = entity_codes(df)
        self.sides = side_codes(df)
        self.transform = transform
        self.filesystem = filesystem

    def __len__(self) -> int:
        return len(self.uris)

    def _read(self, index: int) -> tuple[Image.Image, dict[str, tv_tensors.Mask]]:
        image = rio.read_image(self.uris[index], self.filesystem)
        masks = {key: read_label_map(uris[index], image.size, self.filesystem) for key, uris in self.mask_uris.items()}
        if self.hflips[index]:
            image = TF.horizontal_flip(image)
            masks = {key: TF.horizontal_flip(mask) for key, mask in masks.items()}
        return image, masks

    def __getitem__(self, index: int) -> dict:
        if self._cache is not None and index in self._cache:
            image, masks = self._cache[index]
        else:
            image, masks = self._read(index)
            if self._cache is not None:
                self._cache[index] = image, masks
        if self.transform and masks:
            image, masks = self.transform(image, masks)
        elif self.transform:
            image = self.transform(image)
        return {
            "image": image,
            "label": torch.tensor(self.labels[index]),
            "side": torch.tensor(self.sides[index]),
            "index": index,
            **{key: mask.as_subclass(torch.Tensor).long() for key, mask in masks.items()},
        }
