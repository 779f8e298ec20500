"""PAW-ViT's part attention maps, as in the paper's Fig. 2: where each token looks.

One row per test image (the first image of each of a few entities): the image, then one panel per
token (the K parts in the scheme's order, the background last) with its ATM mask over the image. The
masks are the sigmoid similarities as they are (0..1, one colour scale for every panel), so a token
that attends everywhere shows as a flat colour and specialised tokens as distinct regions.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from PIL import Image, ImageDraw, ImageFont

from reid_core.data.files import read_image
from reid_core.methods.contract import unwrap
from reid_core.parts.schemes import SCHEMES

TILE = 128  # px per panel
CAPTION = 16  # px of text under each panel
TITLE = 22  # px of title band
GAP = 4  # px between panels
IMAGES = 3


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def token_names(rows: pl.DataFrame, num_parts: int) -> list[str]:
    """The scheme's part names for the rows' species at K (``part 1`` ... where there is none), then
    ``background``."""
    species = rows["species"].unique().to_list() if "species" in rows.columns else []
    scheme = SCHEMES.get(species[0]) if len(species) == 1 else None
    if scheme is not None and num_parts in scheme.groupings:
        names = list(scheme.group_names(num_parts))
    else:
        names = [f"part {k + 1}" for k in range(num_parts)]
    return [*names, "background"]


def choose_images(rows: pl.DataFrame, count: int) -> list[int]:
    """Row indices of the first image (by ``image_id``) of up to ``count`` entities."""
    ordered = rows.with_row_index("_row").sort("image_id")
    firsts = ordered.unique("entity", keep="first", maintain_order=True)
    return [int(i) for i in firsts["_row"].head(count)]


def overlay(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """``image`` with a 0..1 ``mask`` as a jet heatmap over it (half each)."""
    import matplotlib

    grey = Image.fromarray((np.clip(mask, 0, 1) * 255).astype(np.uint8)).resize(image.size, Image.Resampling.BILINEAR)
    colours = matplotlib.colormaps["jet"](np.asarray(grey) / 255.0)[..., :3]
    return Image.blend(image.convert("RGB"), Image.fromarray((colours * 255).astype(np.uint8)), 0.5)


def part_attention_maps(network: torch.nn.Module, transform, rows: pl.DataFrame, column: str, *,
                        images: int = IMAGES) -> Image.Image | None:
    """The figure (``images`` rows x (1 + K + 1) panels), or None without ATM masks or test images."""
    net = unwrap(network)
    if not hasattr(net, "part_masks") or rows.is_empty():
        return None
    chosen = choose_images(rows, images)
    names = token_names(rows, net.num_parts)
    uris, entities = rows[column].to_list(), rows["entity"].to_list()
    device = next(net.parameters()).device
    font = _font()
    panels = 1 + len(names)
    figure = Image.new("RGB", (panels * TILE + (panels - 1) * GAP, TITLE + len(chosen) * (TILE + CAPTION + GAP)),
                       "white")
    draw = ImageDraw.Draw(figure)
    draw.text((4, 4), "PAW-ViT part attention (ATM masks, 0..1): one panel per part token, the background last",
              fill="black", font=font)
    was_training = net.training
    net.eval()
    try:
        for index, row in enumerate(chosen):
            image = read_image(uris[row])
            with torch.no_grad():
                masks = net.part_masks(transform(image)[None].to(device))[0].float().cpu().numpy()
            shown = image.resize((TILE, TILE), Image.Resampling.BICUBIC).convert("RGB")
            tiles = [shown, *(overlay(shown, mask) for mask in masks)]
            captions = [str(entities[row]), *names]
            top = TITLE + index * (TILE + CAPTION + GAP)
            for position, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
                left = position * (TILE + GAP)
                figure.paste(tile, (left, top))
                draw.text((left + 2, top + TILE + 2), caption[:22], fill="black", font=font)
    finally:
        net.train(was_training)
    return figure
