"""ELPephants from AER's re-mapped annotation CSV, as a manifest.

``re_mapped_filtered_anno_elephant.csv`` (datasets.md section 3) has one row per image crop. Its
``class_id`` is side-specific (left ears 0-275, right ears = elephant + 276), so it is the entity and
``class_id mod 276`` is the elephant. AER's split is the ``train`` column; its test protocol matches
every test image against all the others (probe = gallery), hence role "both".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from reid_core.data import manifest
from reid_core.data.adapters._inputs import (
    DatasetFormatError,
    find_file,
    parse_int,
    read_csv,
    require_columns,
    root_dir,
    under,
)

SPECIES = "elephant"
ELEPHANTS = 276  # right-side class ids are the elephant index + 276
DEFAULT_CSV = "re_mapped_filtered_anno_elephant.csv"
COLUMNS = ["view", "part", "date", "mod_name", "new_name", "class_id", "new_id", "train", "train_idx_aligned",
           "old_name"]
NAME_COLUMNS = ("new_name", "old_name")  # AER's cropped <k>.jpg files, or the original photos

SCHEMA: dict[str, Any] = {
    **manifest.CORE_SCHEMA,
    "view": pl.String, "part": pl.String, "date": pl.String, "mod_name": pl.String, "new_name": pl.String,
    "class_id": pl.Int64, "new_id": pl.Int64, "train_idx_aligned": pl.Int64, "old_name": pl.String,
}


def load_elpephants(
    root: str | Path,
    *,
    csv: str | Path = DEFAULT_CSV,
    name_column: str = "new_name",
    images: str | Path = "images",
    check_files: bool = False,
) -> pl.DataFrame:
    """One row per CSV row; ``image_uri`` = ``images/<name_column>`` (original names contain spaces)."""
    if name_column not in NAME_COLUMNS:
        raise DatasetFormatError(f"--name-column must be one of {', '.join(NAME_COLUMNS)}, got {name_column!r}")
    base = root_dir(root)
    csv_path = under(base, csv)
    table = read_csv(csv_path, "ELPephants annotation CSV", "--csv")
    require_columns(table, COLUMNS, csv_path)
    image_dir = find_file([under(base, images)], "ELPephants image folder", "--images")
    rows = [_row(record, csv_path, image_dir, name_column) for record in table.iter_rows(named=True)]
    df = manifest.conform(pl.from_dicts(rows, schema=SCHEMA))
    return manifest.check(df, source=f"ELPephants from {csv_path}", check_files=check_files)


def _row(record: dict[str, Any], path: Path, image_dir: Path, name_column: str) -> dict:
    line = record["__line"]
    view = (record["view"] or "").strip().lower()
    class_id = parse_int(record["class_id"], path, line, "class_id")
    train = (record["train"] or "").strip().lower()
    problem = None
    if view not in ("left", "right"):
        problem = f"'view' must be left or right, got {record['view']!r}"
    elif train not in ("true", "false"):
        problem = f"'train' must be True or False, got {record['train']!r}"
    elif not record[name_column] or not record["new_name"]:
        problem = f"'{name_column}' is empty"
    elif not 0 <= class_id < 2 * ELEPHANTS or (class_id >= ELEPHANTS) != (view == "right"):
        problem = (f"class_id {class_id} does not fit view {view!r} (left 0-{ELEPHANTS - 1}, "
                   f"right {ELEPHANTS}-{2 * ELEPHANTS - 1})")
    if problem:
        raise DatasetFormatError(f"{path.name} line {line}: {problem}. Fix: correct that line in {path}")
    split = "train" if train == "true" else "test"
    return {
        "image_id": f"elpephants/{Path(record['new_name']).stem}",  # new_name is unique; old_name repeats
        "image_uri": str(image_dir / record[name_column]),
        "species": SPECIES,
        "individual": str(class_id % ELEPHANTS),
        "entity": str(class_id),
        "side": view,
        "split": split,
        "role": "both" if split == "test" else None,
        "view": record["view"], "part": record["part"], "date": record["date"], "mod_name": record["mod_name"],
        "new_name": record["new_name"], "class_id": class_id,
        "new_id": parse_int(record["new_id"], path, line, "new_id"),
        "train_idx_aligned": parse_int(record["train_idx_aligned"], path, line, "train_idx_aligned"),
        "old_name": record["old_name"],
    }
