"""YakReID-103 from AER's or PAW-ViT's list files, as a manifest.

Both list styles are read by one parser (datasets.md section 2):
- train/val ``path label direction``: AER ``train/302/00002_001.jpg 0 1`` (folder = yak id + 300),
  PAW-ViT ``train/2/00002_001.jpg 0 1`` plus flipped copies ``train/201/00003_003.jpg 122 0``;
- probe/gallery ``path label``: AER ``1/00001_001.jpg 122``, PAW-ViT ``val/1/00001_001.jpg 122``.
Paths are relative to ``train_images`` / ``test_images`` (both default to the root): AER keeps train
crops and test crops in different folders (``data/Animal-2`` and ``data/val``), PAW-ViT under one root.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl

from reid_core.data import manifest
from reid_core.data.adapters._inputs import (
    DatasetFormatError,
    ListEntry,
    MissingInputError,
    find_file,
    parse_list,
    root_dir,
    under,
)

SPECIES = "yak"
LEVELS = ("hard", "simple")
AER_FOLDER_OFFSET = 300  # AER renamed train folder <id> to <id + 300>
TRAIN_FORMAT = "path label direction"
TEST_FORMAT = "path label"
# AER's list names (its ./datalist); PAW-ViT's are train.txt / query.txt / gallery.txt, passed explicitly.
DEFAULT_TRAIN_LIST = "yak_mytrain_aligned.txt"
DEFAULT_VAL_LIST = "yak_myval_aligned.txt"
DEFAULT_PROBE_LIST = "yak_probe_{level}.txt"
DEFAULT_GALLERY_LIST = "yak_gallery_{level}.txt"
# Direction 0 = left, 1 = right as for tigers and elephants; for yak this mapping is UNCONFIRMED.
DIRECTIONS = {0: "left", 1: "right", None: "unknown"}
_FILE_ID = re.compile(r"^(\d+)_\d+")  # <5-digit yak id>_<index>, e.g. 00002_001 or 00008_18

SCHEMA: dict[str, Any] = {
    **manifest.CORE_SCHEMA,
    "label": pl.Int64,  # the list's training/evaluation label
    "source_file": pl.String,
    "source_line": pl.Int64,
}


def load_yakreid(
    root: str | Path,
    *,
    level: str = "hard",
    train_list: str | Path | None = None,
    val_list: str | Path | None = None,
    probe_list: str | Path | None = None,
    gallery_list: str | Path | None = None,
    train_images: str | Path | None = None,
    test_images: str | Path | None = None,
    check_files: bool = False,
) -> pl.DataFrame:
    """Train (+ optional val) rows and the ``level`` probe (role query) / gallery (role gallery) test rows.

    ``individual`` is the yak (from the ``<id>_<index>`` file name, else the folder). Each list label
    has a single direction, so ``entity`` is the yak; where a list gives one yak both directions under
    different labels (PAW-ViT's flipped copies) it treats the sides as distinct: ``<yak>-<side>``.
    """
    if level not in LEVELS:
        raise DatasetFormatError(f"--level must be one of {', '.join(LEVELS)}, got {level!r}")
    base = root_dir(root)
    train_base = under(base, train_images or ".")
    test_base = under(base, test_images or ".")
    train_path = _list(base, train_list, DEFAULT_TRAIN_LIST, "--train-list")
    train = _rows(train_path, "--train-list", TRAIN_FORMAT, train_base, "train", None)
    # AER holds out one image per yak in a val list; PAW-ViT has none, so only an explicit list is required.
    val: list[dict] = []
    try:
        val = _rows(_list(base, val_list, DEFAULT_VAL_LIST, "--val-list"), "--val-list", TRAIN_FORMAT, train_base,
                    "val", None)
    except MissingInputError:
        if val_list is not None:
            raise
    probe_path = _list(base, probe_list, DEFAULT_PROBE_LIST.format(level=level), "--probe-list")
    probe = _rows(probe_path, "--probe-list", TEST_FORMAT, test_base, "test", "query")
    gallery_path = _list(base, gallery_list, DEFAULT_GALLERY_LIST.format(level=level), "--gallery-list")
    gallery = _rows(gallery_path, "--gallery-list", TEST_FORMAT, test_base, "test", "gallery")
    _assign_entities(train + val)
    _assign_entities(probe + gallery)
    df = manifest.conform(pl.from_dicts(train + val + probe + gallery, schema=SCHEMA))
    return manifest.check(df, source=f"YakReID-103 at {base}", check_files=check_files)


def _list(base: Path, value: str | Path | None, default: str, flag: str) -> Path:
    """An explicit list path (relative to the root), else AER's name in the root or its datalist/."""
    candidates = [under(base, value)] if value else [base / default, base / "datalist" / default]
    return find_file(candidates, f"YakReID list file {Path(value or default).name}", flag)


def _rows(path: Path, flag: str, expected: str, images: Path, split: str, role: str | None) -> list[dict]:
    group = "train" if split in ("train", "val") else "test"  # train and val lists share one image pool
    return [
        {
            "image_id": f"yakreid/{group}/{Path(e.path).with_suffix('').as_posix()}",
            "image_uri": str(under(images, e.path)),
            "species": SPECIES,
            "individual": str(_yak_id(e, path)),
            "entity": None,
            "side": DIRECTIONS[e.direction],
            "split": split,
            "role": role,
            "label": e.label,
            "source_file": path.name,
            "source_line": e.line,
        }
        for e in parse_list(path, flag, expected)
    ]


def _yak_id(entry: ListEntry, path: Path) -> int:
    """The yak: from the file name (robust to AER's +300 folders and PAW's flipped-copy folders), else the folder."""
    name = Path(entry.path)
    if match := _FILE_ID.match(name.stem):
        return int(match[1])
    folder = name.parent.name
    if folder.isdigit():  # e.g. the release's one oddly named file, 7/007005.jpg
        return int(folder) - AER_FOLDER_OFFSET if int(folder) > AER_FOLDER_OFFSET else int(folder)
    raise DatasetFormatError(
        f"{path.name} line {entry.line}: cannot tell the yak from {entry.path!r}; expected '<folder id>/"
        f"<5-digit id>_<index>.jpg'. Fix: correct that line in {path}"
    )


def _assign_entities(rows: list[dict]) -> None:
    """entity = yak, or yak-side where the lists give one yak several directions; labels must agree."""
    sides: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["side"] != "unknown":
            sides[row["individual"]].add(row["side"])
    for row in rows:
        split_by_side = len(sides[row["individual"]]) > 1
        row["entity"] = f"{row['individual']}-{row['side']}" if split_by_side else row["individual"]
    _check_labels(rows)


def _check_labels(rows: list[dict]) -> None:
    """One label per entity and one entity per label: otherwise the paths and labels disagree."""
    first: dict[tuple[str, Any], dict] = {}
    for row in rows:
        for key, other_key in ((("entity", row["entity"]), "label"), (("label", row["label"]), "entity")):
            seen = first.setdefault(key, row)
            if seen[other_key] != row[other_key]:
                raise DatasetFormatError(
                    f"{row['source_file']} line {row['source_line']}: {key[0]} {key[1]!r} has {other_key} "
                    f"{row[other_key]!r} here but {seen[other_key]!r} at {seen['source_file']} line "
                    f"{seen['source_line']}. Fix: the list's labels must match its folders; check that line"
                )
