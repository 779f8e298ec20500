"""Apply a foreground mask to an image: fill the background and, optionally, crop to the animal.

AER fills the background with white and trains on the masked images. Cropping to the mask's bounding
box is this project's addition for datasets whose animals fill little of the frame (camera-trap
shots, the synthetic species): it keeps the network's resolution on the animal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class MaskingConfig:
    fill: tuple[int, int, int] = (255, 255, 255)  # AER: background pixels set to white
    crop: bool = False  # crop to the mask's bounding box
    crop_margin: float = 0.08  # of the box's longer side, on every side
    square: bool = True  # square crop, so a later resize keeps the animal's aspect ratio


def masking_of(seg_config: str | None) -> MaskingConfig:
    """The masking a manifest row's masked image was made with (its ``seg_config``); none recorded: no crop."""
    if not seg_config:
        return MaskingConfig()
    try:
        masking = json.loads(seg_config).get("masking") or {}
    except (ValueError, AttributeError):
        raise ValueError(f"seg_config is not a JSON object ({seg_config[:60]!r}): rerun workflows/segment.py "
                         "on this row") from None
    return MaskingConfig(**{k: masking[k] for k in ("crop", "crop_margin", "square") if k in masking})


def cropped_by_segmentation(row: dict) -> bool:
    """Whether the row's masked image is cropped to the animal (flagged rows keep the whole frame)."""
    return bool(row.get("masked_uri")) and row.get("seg_status") != "flagged" and masking_of(row.get("seg_config")).crop


def mask_from_png(image: Image.Image) -> np.ndarray:
    """Any non-zero pixel is foreground (AER's convention for its stored masks)."""
    return np.asarray(image.convert("L")) > 0


def mask_to_png(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L")


def crop_box(mask: np.ndarray, margin: float, square: bool) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) around the mask's foreground, clipped to the image; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    height, width = bottom - top, right - left
    pad = margin * max(height, width)
    cy, cx = (top + bottom) / 2, (left + right) / 2
    half_h, half_w = height / 2 + pad, width / 2 + pad
    if square:
        half_h = half_w = max(half_h, half_w)
    h, w = mask.shape
    return (max(0, int(np.floor(cx - half_w))), max(0, int(np.floor(cy - half_h))),
            min(w, int(np.ceil(cx + half_w))), min(h, int(np.ceil(cy + half_h))))


def masked_box(mask: np.ndarray, config: MaskingConfig) -> tuple[int, int, int, int] | None:
    """The box ``apply_mask`` crops the masked image to, or None where it keeps the whole frame (no
    crop, or an empty mask). Part masks use it to stay on the masked image's frame."""
    return crop_box(mask, config.crop_margin, config.square) if config.crop else None


def apply_mask(image: np.ndarray, mask: np.ndarray, config: MaskingConfig = MaskingConfig()) -> np.ndarray:
    """The masked RGB image (H x W x 3 uint8). An empty mask leaves nothing to crop to: the full frame,
    all background, is returned, so callers should treat empty masks before (see fusion's no-pass policy).
    """
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
    out = np.where(mask[..., None], image, np.asarray(config.fill, dtype=np.uint8))
    box = masked_box(mask, config)
    if box is not None:
        left, top, right, bottom = box
        out = out[top:bottom, left:right]
    return np.ascontiguousarray(out)
