"""Who is photographed where: splits, sides, scenes, query/gallery roles, cameras and frames, one row per
image, before anything is drawn.

In ``train`` an individual appears mostly in its own two or three "home" scenes; in ``val``/``test`` an
individual's images get distinct random scenes, so background carries identity information in training
and none at test time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from reid_core.data.synthetic import seeds
from reid_core.data.synthetic.scenes import DEFAULT_SCENES
from reid_core.data.synthetic.species import preset

DEFAULT_CAMERAS = 6
HOME_FRACTION = 0.85  # share of a training individual's images taken in its home scenes


def _split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} individuals leave none for training with val_fraction={val_fraction} and "
                         f"test_fraction={test_fraction}: use more individuals or smaller fractions")
    return n_train, n_val, n_test


def _assign_roles_and_cameras(rng: np.random.Generator, idx: list[int], cameras: list[int], roles: list,
                              n_cameras: int) -> None:
    """Mark ~1/4 of an entity's images as queries (>= 1 when it has two or more) and make sure every
    query has a same-entity gallery image from another camera."""
    n = len(idx)
    if n < 2:
        for i in idx:
            roles[i] = "gallery"
        return
    queries = set(rng.choice(idx, size=max(1, round(n / 4)), replace=False).tolist())
    gallery = [i for i in idx if i not in queries]
    for i in idx:
        roles[i] = "query" if i in queries else "gallery"
    query_cams = {cameras[q] for q in queries}
    if len(gallery) == 1:
        if cameras[gallery[0]] in query_cams:
            free = [c for c in range(n_cameras) if c not in query_cams]
            cameras[gallery[0]] = int(rng.choice(free))
        return
    gallery_cams = {cameras[g] for g in gallery}
    if len(gallery_cams) == 1 and gallery_cams <= query_cams:
        (cam,) = gallery_cams
        cameras[gallery[int(rng.integers(len(gallery)))]] = int((cam + rng.integers(1, n_cameras)) % n_cameras)


def plan(
    species: Sequence[str],
    individuals: int,
    images_per_individual: int,
    *,
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.3,
    scenes: int = DEFAULT_SCENES,
    cameras: int = DEFAULT_CAMERAS,
) -> pl.DataFrame:
    """Who is photographed where: one row per image with the labels but no files."""
    if cameras < 2:
        raise ValueError("cameras must be >= 2 so that every query has a gallery image from another camera")
    if scenes < 3:
        raise ValueError("scenes must be >= 3 (home scenes in train, distinct scenes in val/test)")
    rows: dict[str, list] = {k: [] for k in ("species", "index", "image", "side", "split", "role", "camera",
                                              "frame", "scene")}
    for name in species:
        preset(name)
        code = seeds.species_code(name)
        n_train, n_val, _ = _split_counts(individuals, val_fraction, test_fraction)
        order = seeds.stream(seed, code, 0, 0, seeds.SPLIT).permutation(individuals)
        split_of = {int(i): ("train" if r < n_train else "val" if r < n_train + n_val else "test")
                    for r, i in enumerate(order)}
        frame_rng = seeds.stream(seed, code, 0, 0, seeds.FRAME)
        next_frame = [int(frame_rng.integers(0, 1000)) for _ in range(cameras)]
        for ind in range(individuals):
            rng = seeds.stream(seed, code, ind, 0, seeds.PLAN)
            m = images_per_individual
            sides = np.array(["left"] * (m // 2 + int(m % 2 and rng.random() < 0.5)))
            sides = rng.permutation(np.concatenate([sides, np.array(["right"] * (m - len(sides)))])).tolist()
            split = split_of[ind]
            if split == "train":
                home = rng.choice(scenes, size=int(rng.integers(2, 4)), replace=False)
                scene = [int(rng.choice(home)) if rng.random() < HOME_FRACTION else int(rng.integers(scenes))
                         for _ in range(m)]
            else:  # distinct scenes per individual: the background says nothing about identity
                scene = np.concatenate([rng.permutation(scenes) for _ in range(-(-m // scenes))])[:m].tolist()
            cams = rng.integers(0, cameras, m).tolist()
            roles: list = [None] * m
            if split != "train":
                for s in ("left", "right"):
                    _assign_roles_and_cameras(rng, [i for i in range(m) if sides[i] == s], cams, roles, cameras)
            for i in range(m):
                rows["species"].append(name)
                rows["index"].append(ind)
                rows["image"].append(i)
                rows["side"].append(sides[i])
                rows["split"].append(split)
                rows["role"].append(roles[i])
                rows["camera"].append(f"cam{cams[i]}")
                rows["frame"].append(next_frame[cams[i]])
                next_frame[cams[i]] += int(frame_rng.integers(1, 40))
                rows["scene"].append(scene[i])
    return pl.DataFrame(rows, schema={"species": pl.String, "index": pl.Int64, "image": pl.Int64,
                                      "side": pl.String, "split": pl.String, "role": pl.String,
                                      "camera": pl.String, "frame": pl.Int64, "scene": pl.Int64})
