"""DVE correspondence maps, as in the AER paper's Fig. 4: what the dense descriptors Phi(x) learnt.

Per row, two test images of the same entity: a query point on the first (green dot, the
foreground pixel nearest the animal's centroid), its best match on the second (red dot: the
position whose descriptor is most similar) and the similarity of the query point's descriptor to
every position of the second image as a heatmap over it. The descriptors are the DVE head's output
(``DVENet.dve_features``, stride 4 of the network input); similarity is the cosine of descriptors
(the loss itself uses raw dot products; the cosine makes maps comparable across images).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from PIL import Image, ImageDraw, ImageFont

from reid_core.data.files import read_image
from reid_core.methods.contract import unwrap

TILE = 160  # px per panel
CAPTION = 18  # px of text under each panel
TITLE = 22  # px of title band
GAP = 6  # px between panels
PANELS = 3  # query point, best match, heatmap
GREEN, RED = (30, 200, 60), (230, 30, 30)
BACKGROUND_LEVEL = 245  # masked images are filled white: pixels at least this bright in every channel


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def choose_pairs(rows: pl.DataFrame, pairs: int) -> list[tuple[int, int]]:
    """Row pairs (first two images by ``image_id``) of up to ``pairs`` entities that have two images."""
    ordered = rows.with_row_index("_row").sort("image_id")
    found = []
    for _, group in ordered.group_by("entity", maintain_order=True):
        if group.height >= 2:
            found.append((int(group["_row"][0]), int(group["_row"][1])))
        if len(found) == pairs:
            break
    return found


def query_point(image: Image.Image) -> tuple[int, int]:
    """(x, y) of the foreground pixel nearest the foreground's centroid (the image centre when the
    image has no background fill)."""
    pixels = np.asarray(image.convert("RGB"))
    foreground = pixels.min(axis=2) < BACKGROUND_LEVEL
    if not foreground.any():
        return image.width // 2, image.height // 2
    ys, xs = np.nonzero(foreground)
    cy, cx = ys.mean(), xs.mean()
    nearest = np.argmin((ys - cy) ** 2 + (xs - cx) ** 2)
    return int(xs[nearest]), int(ys[nearest])


def similarity_map(features: torch.Tensor, point: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Cosine similarity of image 0's descriptor at ``point`` (x, y in input pixels of ``size`` = (W, H))
    to every position of image 1; ``features`` is (2, C, h, w). Returns (h, w)."""
    _, channels, h, w = features.shape
    x = min(w - 1, int(point[0] * w / size[0]))
    y = min(h - 1, int(point[1] * h / size[1]))
    normed = torch.nn.functional.normalize(features.float(), dim=1)
    query = normed[0, :, y, x]
    return torch.einsum("c,chw->hw", query, normed[1]).cpu().numpy()


def _dot(draw: ImageDraw.ImageDraw, xy: tuple[float, float], colour: tuple[int, int, int], radius: int = 5) -> None:
    x, y = xy
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline="white", width=2)


def _heatmap(similarity: np.ndarray, under: Image.Image) -> Image.Image:
    import matplotlib

    low, high = float(similarity.min()), float(similarity.max())
    scaled = (similarity - low) / (high - low) if high > low else np.zeros_like(similarity)
    grey = Image.fromarray((scaled * 255).astype(np.uint8)).resize(under.size, Image.Resampling.BILINEAR)
    colours = matplotlib.colormaps["jet"](np.asarray(grey) / 255.0)[..., :3]
    heat = Image.fromarray((colours * 255).astype(np.uint8))
    return Image.blend(under.convert("RGB"), heat, 0.5)


def correspondence_maps(network: torch.nn.Module, transform, rows: pl.DataFrame, column: str, *,
                        pairs: int = 3) -> Image.Image | None:
    """The figure (``pairs`` rows x 3 panels), or None without a DVE head or a pair of images."""
    net = unwrap(network)
    if getattr(net, "dve_head", None) is None:
        return None
    chosen = choose_pairs(rows, pairs)
    if not chosen:
        return None
    uris = rows[column].to_list()
    entities = rows["entity"].to_list()
    device = next(net.parameters()).device
    font = _font()
    width = PANELS * TILE + (PANELS - 1) * GAP
    figure = Image.new("RGB", (width, TITLE + len(chosen) * (TILE + CAPTION + GAP)), "white")
    draw = ImageDraw.Draw(figure)
    draw.text((4, 4), "DVE descriptors: query point (green) -> best match (red) on another image of the same "
              "animal, and the cosine similarity", fill="black", font=font)
    was_training = net.training
    net.eval()
    try:
        for index, (a, b) in enumerate(chosen):
            images = [read_image(uris[a]), read_image(uris[b])]
            batch = torch.stack([transform(image) for image in images]).to(device)
            with torch.no_grad():
                features = net.dve_features(batch)
            size = (batch.shape[-1], batch.shape[-2])
            shown = [image.resize(size, Image.Resampling.BICUBIC) for image in images]
            point = query_point(shown[0])
            similarity = similarity_map(features, point, size)
            by, bx = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
            match = ((bx + 0.5) * size[0] / similarity.shape[1], (by + 0.5) * size[1] / similarity.shape[0])
            scale = (TILE / size[0], TILE / size[1])
            panels = [image.resize((TILE, TILE), Image.Resampling.BICUBIC).convert("RGB") for image in shown]
            _dot(ImageDraw.Draw(panels[0]), (point[0] * scale[0], point[1] * scale[1]), GREEN)
            _dot(ImageDraw.Draw(panels[1]), (match[0] * scale[0], match[1] * scale[1]), RED)
            panels.append(_heatmap(similarity, panels[1]))
            captions = (str(entities[a]), f"best match, cos {similarity.max():.2f}", "similarity")
            top = TITLE + index * (TILE + CAPTION + GAP)
            for column_index, (panel, caption) in enumerate(zip(panels, captions, strict=True)):
                left = column_index * (TILE + GAP)
                figure.paste(panel, (left, top))
                draw.text((left + 2, top + TILE + 2), caption[:26], fill="black", font=font)
    finally:
        net.train(was_training)
    return figure
