"""ATRW (Amur tiger re-ID): LILA's re-ID archives plus the eval-script ground truth, as a manifest.

Layouts (datasets.md section 1): WildlifeDatasets unpacks each archive into a folder of its name and
keeps the ground truth in ``annotations/``; AER keeps test crops in ``test/`` and the ground truth in
``atrw_anno_reid_test/``. Both are found automatically; every location can also be given explicitly.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl

from reid_core.data import manifest
from reid_core.data.adapters._inputs import (
    DatasetFormatError,
    find_file,
    parse_int,
    parse_list,
    read_csv,
    read_json,
    root_dir,
    under,
)

SPECIES = "tiger"
KEYPOINT_VALUES = 45  # 15 keypoints x (x, y, visibility)
SIDES_FORMAT = "train/<eid>/<file> <label> <0 left|1 right>"
GT_KEYS = {"query", "entityid", "frame", "imgid"}

SCHEMA: dict[str, Any] = {
    **manifest.CORE_SCHEMA,
    "atrw_imgid": pl.Int64,  # the id the official evaluator and submissions use
    "atrw_query": pl.String,  # "sing" / "multi": the plain protocol's single- vs cross-camera queries
    "keypoints": pl.List(pl.Float64),
}


def load_atrw(
    root: str | Path,
    *,
    gt: str | Path | None = None,
    sides: str | Path | None = None,
    val_per_entity: int = 0,
    train_images: str | Path | None = None,
    test_images: str | Path | None = None,
    check_files: bool = False,
) -> pl.DataFrame:
    """Train rows from ``reid_list_train.csv``, test rows from ``gt_test_plain.json``.

    An ATRW "entity" is one flank of a tiger. The release has no ids linking the two flanks of the same
    animal, so ``individual`` is the entity id too. ``sides`` is a PGCFL/AER list giving each training
    image's flank; without it ``side`` is "unknown".
    """
    if val_per_entity < 0:
        raise DatasetFormatError(f"--val-per-entity must be >= 0, got {val_per_entity}")
    base = root_dir(root)
    train = _train_rows(base, train_images)
    if sides is not None:
        _apply_sides(train, under(base, sides))
    _hold_out_val(train, val_per_entity)
    test = _test_rows(base, gt, test_images)
    df = manifest.conform(pl.from_dicts(train + test, schema=SCHEMA))
    return manifest.check(df, source=f"ATRW at {base}", check_files=check_files)


def _train_rows(base: Path, train_images: str | Path | None) -> list[dict]:
    csv_path = base / "atrw_anno_reid_train" / "reid_list_train.csv"
    table = read_csv(csv_path, "ATRW training list", "--root (the folder holding atrw_anno_reid_train/)",
                     has_header=False)
    images = find_file([under(base, train_images or "atrw_reid_train/train")], "ATRW training image folder",
                       "--train-images")
    if table.width != 3:  # __line + the two columns
        raise DatasetFormatError(f"{csv_path.name}: expected 2 columns 'entityid,filename' without a header, "
                                 f"found {table.width - 1}. Fix: pass the re-ID list from atrw_anno_reid_train")
    keypoints = _keypoints(base / "atrw_anno_reid_train" / "reid_keypoints_train.json")
    rows = []
    for line, eid, filename in table.iter_rows():
        entity = str(parse_int(eid, csv_path, line, "entityid"))
        if not filename or not filename.strip():
            raise DatasetFormatError(f"{csv_path.name} line {line}: empty filename. Fix: correct that line")
        filename = filename.strip()
        rows.append(_row(f"atrw/train/{Path(filename).stem}", images / filename, entity, "train", None,
                         keypoints.get(filename), imgid=_imgid(filename)))
    return rows


def _test_rows(base: Path, gt: str | Path | None, test_images: str | Path | None) -> list[dict]:
    gt_candidates = ([under(base, gt)] if gt else
                     [base / "annotations" / "gt_test_plain.json", base / "atrw_anno_reid_test" / "gt_test_plain.json"])
    gt_path = find_file(gt_candidates, "ATRW plain ground truth gt_test_plain.json", "--gt")
    image_candidates = ([under(base, test_images)] if test_images else
                        [base / "atrw_reid_test" / "test", base / "test"])  # WildlifeDatasets, then AER
    images = find_file(image_candidates, "ATRW test image folder", "--test-images")
    keypoints = _keypoints(base / "atrw_anno_reid_test" / "reid_keypoints_test.json")
    items = read_json(gt_path, "ATRW ground truth", "--gt")
    if not isinstance(items, list):
        raise DatasetFormatError(f"{gt_path.name}: expected a JSON list of objects, got {type(items).__name__}. "
                                 "Fix: pass the plain-track gt_test_plain.json with --gt (not the wild-track file)")
    rows = []
    for n, item in enumerate(items):
        eid, (a, b, frame_no), imgid, query = _gt_item(item, n, gt_path)
        if eid == -1:
            continue  # the evaluator treats eid -1 as junk; it is no identity
        filename = f"{imgid:06d}.jpg"
        rows.append(_row(f"atrw/test/{imgid:06d}", images / filename, str(eid), "test", "both",
                         keypoints.get(filename), imgid=imgid, camera=f"{a}-{b}", frame=frame_no, query=query))
    return rows


def _gt_item(item: Any, n: int, path: Path) -> tuple[int, list[int], int, str]:
    problem = None
    if not isinstance(item, dict) or not GT_KEYS <= set(item):
        problem = f"expected an object with keys {sorted(GT_KEYS)}"
    elif not (isinstance(item["frame"], list) and len(item["frame"]) == 3
              and all(isinstance(v, int) for v in item["frame"])):
        problem = "'frame' must be a list of 3 integers [a, b, frame_no]"
    elif not isinstance(item["entityid"], int) or not isinstance(item["imgid"], int):
        problem = "'entityid' and 'imgid' must be integers"
    elif item["query"] not in ("sing", "multi"):
        problem = "'query' must be 'sing' or 'multi'"
    if problem:
        raise DatasetFormatError(f"{path.name} item {n} (0-based): {problem}, got {item!r}. "
                                 "Fix: pass the plain-track gt_test_plain.json with --gt")
    return item["entityid"], item["frame"], item["imgid"], item["query"]


def _keypoints(path: Path) -> dict[str, list[float]]:
    """Filename -> 45 numbers; optional (absent file -> no keypoints)."""
    if not path.exists():
        return {}
    data = read_json(path, "ATRW keypoints", "--root")
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path.name}: expected an object mapping file names to {KEYPOINT_VALUES} numbers")
    for name, values in data.items():
        if not isinstance(values, list) or len(values) != KEYPOINT_VALUES:
            raise DatasetFormatError(f"{path.name}: entry {name!r} must be a list of {KEYPOINT_VALUES} numbers "
                                     f"(15 x [x, y, v]). Fix: re-download {path}")
    return {name: [float(v) for v in values] for name, values in data.items()}


def _apply_sides(rows: list[dict], path: Path) -> None:
    """Set ``side`` from a PGCFL/AER list; an entity is one flank, so a unanimous side fills its unlisted images."""
    by_file = {Path(r["image_uri"]).name: r for r in rows}
    for entry in parse_list(path, "--sides", SIDES_FORMAT):
        row = by_file.get(Path(entry.path).name)
        if row is None or entry.direction is None:
            continue  # an image outside the labelled list, or a line without a direction
        folder = Path(entry.path).parent.name
        if folder.isdigit() and folder != row["entity"]:
            raise DatasetFormatError(
                f"{path.name} line {entry.line}: {entry.path} is in folder {folder} but reid_list_train.csv gives "
                f"entity {row['entity']}. Fix: pass the side list that matches this ATRW release"
            )
        row["side"] = "right" if entry.direction == 1 else "left"
    known: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["side"] != "unknown":
            known[row["entity"]].add(row["side"])
    for row in rows:
        if row["side"] == "unknown" and len(known[row["entity"]]) == 1:
            row["side"] = next(iter(known[row["entity"]]))


def _hold_out_val(rows: list[dict], k: int) -> None:
    """Move the first ``k`` images (by file name) of each entity to val, keeping at least one in train."""
    if k == 0:
        return
    by_entity: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_entity[row["entity"]].append(row)
    for members in by_entity.values():
        members.sort(key=lambda r: r["image_id"])
        for row in members[: min(k, len(members) - 1)]:
            row["split"] = "val"


def _imgid(filename: str) -> int | None:
    stem = Path(filename).stem
    return int(stem) if stem.isdigit() else None


def _row(image_id: str, path: Path, entity: str, split: str, role: str | None, keypoints: list[float] | None,
         *, imgid: int | None, camera: str | None = None, frame: int | None = None, query: str | None = None) -> dict:
    return {
        "image_id": image_id, "image_uri": str(path), "species": SPECIES, "individual": entity, "entity": entity,
        "side": "unknown", "camera": camera, "frame": frame, "split": split, "role": role,
        "atrw_imgid": imgid, "atrw_query": query, "keypoints": keypoints,
    }
