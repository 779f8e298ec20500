"""Whole camera-trap photos: 0-3 animals of one species at varied scale on a large scene, with the exact
box and mask of every animal written beside the photo (for the detection stage and its ``reference``
detector, as ``ref_mask_uri`` serves the ``reference`` segmenter).

Each animal is an individual of the dataset (same seed, same signature), drawn by ``render_image`` on a
square tile cut from the photo's scene, so the pixels around it are the scene's own and its mask is
exact; tiles do not overlap, so no animal hides another. The photos' individuals come from the
dataset's ``test`` split: a gallery of that split can name them.

Layout under ``DIR`` (local or s3://):
    <species>/photos/<photo>.png           the photo
    <species>/masks/<photo>_<k>.png        animal k's mask (255 = animal), photo-sized
    <species>/boxes/<photo>.json           [{"box": [x0, y0, x1, y1], "individual", "entity", "side",
                                             "mask_uri"}, ...] (pixel edges, x1/y1 exclusive)
    manifest.parquet                       one row per photo: role query, individual unknown,
                                           ``ref_boxes_uri``, ``animals`` (the count)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import polars as pl
from PIL import Image

from reid_core.data import files as rio
from reid_core.data import manifest
from reid_core.data.synthetic import seeds
from reid_core.data.synthetic.planning import plan
from reid_core.data.synthetic.render import DEFAULT_OCCLUSION, render_image
from reid_core.data.synthetic.scenes import DEFAULT_SCENES, scene_textures

WHOLE = 8  # stream tag of the whole-photo plan (seeds' tags stop at 7)
ANIMAL_WEIGHTS = (0.15, 0.35, 0.3, 0.2)  # P(0, 1, 2, 3 animals in a photo)
SCALE = (0.25, 0.6)  # an animal's tile side, as a fraction of the photo side
FIRST_INDEX = 1000  # render indices above the dataset's images: other poses than the gallery's


def _tiles(rng: np.random.Generator, count: int, size: int, tries: int = 60) -> list[tuple[int, int, int]]:
    """Up to ``count`` non-overlapping square tiles (x, y, side) inside a ``size`` square."""
    placed: list[tuple[int, int, int]] = []
    for _ in range(count):
        for _ in range(tries):
            side = max(48, int(round(rng.uniform(*SCALE) * size)))
            x, y = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
            if all(x + side <= a or a + s <= x or y + side <= b or b + s <= y for a, b, s in placed):
                placed.append((x, y, side))
                break
    return placed


def render_photo(species: str, individuals: Sequence[int], key: int, background: np.ndarray, *, seed: int,
                 occlusion: float = DEFAULT_OCCLUSION) -> tuple[np.ndarray, list[dict]]:
    """One photo on ``background`` (S x S x 3) with ``individuals``; (image, animals) where each animal
    has ``individual`` (index), ``side``, ``box`` and ``mask`` (photo-sized, bool). Animals whose tile
    found no room, or that vegetation hid entirely, are left out."""
    size = background.shape[0]
    rng = seeds.stream(seed, seeds.species_code(species), key, 0, WHOLE)
    image = background.copy()
    animals = []
    for k, (x, y, side) in enumerate(_tiles(rng, len(individuals), size)):
        ind, facing = int(individuals[k]), "left" if rng.random() < 0.5 else "right"
        tile = np.ascontiguousarray(image[y:y + side, x:x + side])
        rendered = render_image(species, ind, FIRST_INDEX + key * 4 + k, facing, tile, seed=seed, occlusion=occlusion)
        image[y:y + side, x:x + side] = rendered.image
        mask = np.zeros((size, size), bool)
        mask[y:y + side, x:x + side] = rendered.mask
        ys, xs = np.nonzero(mask)
        if not len(ys):
            continue
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        animals.append({"individual": ind, "side": facing, "box": box, "mask": mask})
    return image, animals


def generate_whole_photos(out_dir: str, species: Sequence[str], photos: int, *, individuals: int, seed: int,
                          size: int = 384, val_fraction: float = 0.1, test_fraction: float = 0.3,
                          scenes: int = DEFAULT_SCENES, occlusion: float = DEFAULT_OCCLUSION) -> pl.DataFrame:
    """Write ``photos`` whole photos per species under ``out_dir`` and their manifest; return it. The
    individuals are those of the dataset made with the same ``individuals``, ``seed`` and fractions."""
    if photos < 1:
        raise ValueError(f"photos must be >= 1, got {photos}")
    if size < 96:
        raise ValueError(f"photo size {size} is too small for several animals: use >= 96")
    out = out_dir if rio.is_s3(out_dir) else os.path.abspath(os.path.expanduser(out_dir))
    backgrounds = scene_textures(seed, scenes, size)
    table = plan(species, individuals, 1, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                 scenes=scenes)
    rows = []
    for name in species:
        pool = table.filter((pl.col("species") == name) & (pl.col("split") == "test"))["index"].to_list()
        for p in range(photos):
            rng = seeds.stream(seed, seeds.species_code(name), p, 1, WHOLE)
            count = int(rng.choice(len(ANIMAL_WEIGHTS), p=ANIMAL_WEIGHTS))
            chosen = rng.choice(pool, size=min(count, len(pool)), replace=False).tolist()
            image, animals = render_photo(name, chosen, p, backgrounds[int(rng.integers(scenes))], seed=seed,
                                          occlusion=occlusion)
            photo = f"{name}_whole_{p:04d}"
            uri = rio.join(out, name, "photos", f"{photo}.png")
            rio.write_image(uri, Image.fromarray(image, "RGB"), compress_level=1)
            truth = []
            for k, animal in enumerate(animals):
                mask_uri = rio.join(out, name, "masks", f"{photo}_{k}.png")
                rio.write_image(mask_uri, Image.fromarray(animal["mask"].astype(np.uint8) * 255, "L"), compress_level=1)
                individual = f"{name}_{animal['individual']:04d}"
                truth.append({"box": animal["box"], "individual": individual, "side": animal["side"],
                              "entity": f"{individual}_{animal['side']}", "mask_uri": mask_uri})
            boxes_uri = rio.join(out, name, "boxes", f"{photo}.json")
            rio.write_bytes(boxes_uri, json.dumps(truth).encode())
            rows.append({"image_id": f"{name}/whole/{p:04d}", "image_uri": uri, "species": name, "individual": None,
                         "entity": None, "side": "unknown", "camera": f"cam{int(rng.integers(6))}", "frame": p,
                         "split": "test", "role": "query", "ref_boxes_uri": boxes_uri, "animals": len(truth)})
    df = manifest.conform(pl.DataFrame(rows, schema_overrides={"individual": pl.String, "entity": pl.String}))
    source = rio.join(out, "manifest.parquet")
    manifest.check(df, source=source, disjoint=())
    manifest.write(df, source)
    return df


def read_truth(uri: str, filesystem=None) -> list[dict]:
    """A photo's animals as written by ``generate_whole_photos``."""
    return json.loads(rio.read_bytes(uri, filesystem))
