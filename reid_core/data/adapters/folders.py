"""A folder per individual (``root/<individual>/*.jpg``) as a manifest, with a seeded identity split.

The simplest layout a field team produces. Splitting is by individual, never by image, so the test
identities are unseen in training (the disjoint protocol); ``query_per_entity`` picks the queries
among each test individual's images, else every test image is both query and gallery.
"""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl

from reid_core.data import manifest
from reid_core.data.adapters._inputs import DatasetFormatError, MissingInputError, root_dir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def load_folders(
    root: str | Path,
    *,
    species: str,
    test_fraction: float = 0.0,
    seed: int = 0,
    query_per_entity: int = 0,
    prefix: str | None = None,
    check_files: bool = False,
) -> pl.DataFrame:
    """Images under each sub-folder (recursively; hidden files skipped); ``individual`` = ``entity`` = folder name."""
    if not species or not species.strip():
        raise DatasetFormatError("a species is required. Fix: pass --species NAME (e.g. --species lynx)")
    if not 0.0 <= test_fraction <= 1.0:
        raise DatasetFormatError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if query_per_entity < 0:
        raise DatasetFormatError(f"--query-per-entity must be >= 0, got {query_per_entity}")
    base = root_dir(root)
    images = _images(base)
    if not images:
        raise MissingInputError(
            f"no images found in {base}/<individual>/ ({', '.join(sorted(IMAGE_SUFFIXES))}). "
            "Fix: pass the folder whose sub-folders are the individuals with --root"
        )
    test = _test_individuals(sorted(images), test_fraction, seed)
    prefix = prefix or base.name
    rows = []
    for individual, files in sorted(images.items()):
        roles = _roles(files, query_per_entity, seed, individual) if individual in test else {}
        for path in files:
            rows.append({
                "image_id": f"{prefix}/{path.relative_to(base).as_posix()}",
                "image_uri": str(path),
                "species": species.strip().lower(),
                "individual": individual,
                "entity": individual,
                "side": "unknown",
                "split": "test" if individual in test else "train",
                "role": roles.get(path),
            })
    df = manifest.conform(pl.from_dicts(rows, schema={c: manifest.CORE_SCHEMA[c] for c in rows[0]}))
    return manifest.check(df, source=f"folders at {base}", check_files=check_files)


def _images(base: Path) -> dict[str, list[Path]]:
    images: dict[str, list[Path]] = {}
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        if files:
            images[folder.name] = files
    return images


def _test_individuals(individuals: list[str], fraction: float, seed: int) -> set[str]:
    """round(fraction x N) individuals, at least one when fraction > 0 and at least one left for training when < 1."""
    n = len(individuals)
    count = round(fraction * n)
    if fraction > 0:
        count = max(count, 1)
    if fraction < 1:
        count = min(count, n - 1)
    order = list(individuals)
    random.Random(seed).shuffle(order)
    return set(order[:count])


def _roles(files: list[Path], k: int, seed: int, individual: str) -> dict[Path, str]:
    """``k`` seeded queries per individual (at least one image stays in the gallery); k=0 -> all "both"."""
    if k == 0:
        return {p: "both" for p in files}
    order = list(files)
    random.Random(f"{seed}/{individual}").shuffle(order)
    queries = set(order[: min(k, len(files) - 1)])
    return {p: "query" if p in queries else "gallery" for p in files}
