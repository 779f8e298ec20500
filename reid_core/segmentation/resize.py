"""AER's size limit: images wider than 2250 or taller than 1500 px are segmented downscaled, and the mask
is brought back to the original size (AER overwrote its images with the downscaled copies; this project
keeps the originals and resizes the mask instead)."""

from __future__ import annotations

import cv2
import numpy as np

MAX_WIDTH = 2250
MAX_HEIGHT = 1500


def limited_size(height: int, width: int, max_height: int | None = MAX_HEIGHT,
                 max_width: int | None = MAX_WIDTH) -> tuple[int, int]:
    """(height, width) after AER's ``resize_imgs_in_dir``: first cap the height, then the width, each
    keeping the aspect ratio and truncating to int exactly as AER did. ``None`` lifts a limit."""
    if max_height is not None and height > max_height:
        width, height = int(max_height * width / height), max_height
    if max_width is not None and width > max_width:
        width, height = max_width, int(max_width * height / width)
    return height, width


def downscale(image: np.ndarray, max_height: int | None = MAX_HEIGHT,
              max_width: int | None = MAX_WIDTH) -> np.ndarray:
    """The image itself if it fits, else a copy resized with OpenCV's default (bilinear), as AER."""
    height, width = image.shape[:2]
    size = limited_size(height, width, max_height, max_width)
    if size == (height, width):
        return image
    return cv2.resize(image, (size[1], size[0]))


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A boolean mask at (height, width): bilinear on 0/255 then thresholded, for smooth upscaled edges."""
    if mask.shape == (height, width):
        return mask
    scaled = cv2.resize(mask.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR)
    return scaled > 127
