"""A whole dataset on disk: plan it in the parent, render each individual in a worker process, write
images, masks, part maps, ATRW-format keypoints (the manifest's ``keypoints`` column and
``<species>/reid_keypoints.json``) and the manifest (local or s3://)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from reid_core.data import files as rio
from reid_core.data import manifest
from reid_core.data.synthetic.planning import DEFAULT_CAMERAS, plan
from reid_core.data.synthetic.render import DEFAULT_OCCLUSION, render_image
from reid_core.data.synthetic.scenes import DEFAULT_SCENES, scene_textures
from reid_core.data.synthetic.species import preset
from reid_core.parts.keypoints import file_name

DEFAULT_SPECIES = ("tiger", "yak", "elephant")
KEYPOINT_FILE = "reid_keypoints.json"  # per species, in ATRW's format (also the manifest's ``keypoints``)
SPLIT_DISJOINT = (("train", "val"), ("train", "test"), ("val", "test"))


def _uri(out: str, species: str, kind: str, individual: str, image: int) -> str:
    return rio.join(out, species, kind, f"{individual}_{image:03d}.png")


@dataclass(frozen=True)
class _Job:
    out: str
    species: str
    individual: int
    images: tuple[tuple[int, str, int], ...]  # (image index, side, scene)
    seed: int
    size: int
    scenes: int
    occlusion: float


def _render_individual(job: _Job) -> list[tuple[bool, tuple[float, ...]]]:
    """Write one individual's images, masks and part maps; (occluded, keypoints) per image."""
    backgrounds = scene_textures(job.seed, job.scenes, job.size)
    name = f"{job.species}_{job.individual:04d}"
    rendered = []
    for index, side, scene in job.images:
        r = render_image(job.species, job.individual, index, side, backgrounds[scene], seed=job.seed,
                         occlusion=job.occlusion)
        rio.write_image(_uri(job.out, job.species, "images", name, index), Image.fromarray(r.image, "RGB"),
                        compress_level=1)
        rio.write_image(_uri(job.out, job.species, "masks", name, index),
                        Image.fromarray(r.mask.astype(np.uint8) * 255, "L"), compress_level=1)
        rio.write_image(_uri(job.out, job.species, "parts", name, index), Image.fromarray(r.parts, "L"),
                        compress_level=1)
        rendered.append((r.occluded, r.keypoints))
    return rendered


def _write_keypoint_files(out: str, df: pl.DataFrame) -> None:
    """``<species>/reid_keypoints.json`` as ATRW's reid_keypoints_*.json: image file name -> 45 numbers."""
    for (species,), group in df.group_by(["species"], maintain_order=True):
        table = {file_name(uri): values  # keyed by file name, as ATRW's (and as part masks match them)
                 for uri, values in zip(group["image_uri"], group["keypoints"].to_list(), strict=True)}
        rio.write_bytes(rio.join(out, species, KEYPOINT_FILE), json.dumps(table).encode())


def generate(
    out_dir: str | Path,
    species: Sequence[str] = DEFAULT_SPECIES,
    individuals: int = 40,
    images_per_individual: int = 12,
    size: int = 128,
    seed: int = 0,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.3,
    scenes: int = DEFAULT_SCENES,
    cameras: int = DEFAULT_CAMERAS,
    occlusion: float = DEFAULT_OCCLUSION,
    workers: int | None = None,
) -> pl.DataFrame:
    """Write images, masks, part maps and ``manifest.parquet`` under ``out_dir`` (local or s3://) and
    return the manifest. Byte-identical for the same arguments whatever ``workers`` is."""
    if isinstance(species, str):
        species = tuple(s.strip() for s in species.split(",") if s.strip())
    for name in species:
        preset(name)
    if individuals < 1 or images_per_individual < 1:
        raise ValueError("individuals and images_per_individual must be >= 1")
    if size < 32:
        raise ValueError(f"size {size} is too small to draw identity cues: use >= 32")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = str(out_dir) if rio.is_s3(str(out_dir)) else str(Path(out_dir).expanduser().resolve())
    table = plan(species, individuals, images_per_individual, seed=seed, val_fraction=val_fraction,
                 test_fraction=test_fraction, scenes=scenes, cameras=cameras)
    jobs = []
    for (name, ind), group in table.group_by(["species", "index"], maintain_order=True):
        images = tuple(zip(group["image"], group["side"], group["scene"], strict=True))
        jobs.append(_Job(out, name, ind, images, seed, size, scenes, occlusion))
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            results = pool.map(_render_individual, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
    else:
        results = [_render_individual(job) for job in jobs]
    occluded = [flag for result in results for flag, _ in result]
    keypoints = [list(points) for result in results for _, points in result]

    individual = pl.format("{}_{}", pl.col("species"), pl.col("index").cast(pl.String).str.zfill(4))
    image = pl.col("image").cast(pl.String).str.zfill(3)

    def uri(kind: str) -> pl.Expr:
        sep = "/" if rio.is_s3(out) else os.sep
        return pl.concat_str([pl.lit(out), pl.col("species"), pl.lit(kind), pl.format("{}_{}.png", individual, image)],
                             separator=sep)

    df = table.with_columns(
        pl.format("{}/{}/{}", pl.col("species"), pl.col("index").cast(pl.String).str.zfill(4), image).alias("image_id"),
        uri("images").alias("image_uri"),
        individual.alias("individual"),
        pl.format("{}_{}", individual, pl.col("side")).alias("entity"),
        uri("masks").alias("mask_uri"),
        uri("masks").alias("ref_mask_uri"),
        uri("parts").alias("parts_uri"),
        pl.format("scene_{}", pl.col("scene").cast(pl.String).str.zfill(2)).alias("scene"),
        pl.lit(None, dtype=pl.String).alias("seg_method"),
        pl.Series("occluded", occluded, dtype=pl.Boolean),
        pl.Series("keypoints", keypoints, dtype=pl.List(pl.Float64)),
    ).drop("index", "image")
    df = manifest.conform(df)
    source = rio.join(out, "manifest.parquet")
    manifest.check(df, source=source, disjoint=SPLIT_DISJOINT)
    _write_keypoint_files(out, df)
    manifest.write(df, source)
    return df
