"""Keypoint sources for part masks, each brought to one form: a flat ``[x1, y1, v1, ...]`` list per image
in a mapping's order (``v`` is a visibility flag or a detector's score).

- ATRW's ``reid_keypoints_*.json``: an object from file name to 45 numbers (15 keypoints x (x, y, v)).
- COCO keypoint files as annotation tools and pose estimators write them: ``images`` (``file_name``, or
  ATRW's pose files' ``filename``), ``annotations`` with ``keypoints``, ``categories`` naming their
  ``keypoints``. Where an image has several annotations, the one with the most visible keypoints is used.
- A manifest column of flat lists (the ATRW adapter writes ``keypoints``).

Files are matched to manifest rows by the image's file name (the last component of ``image_uri`` and of
the file's own names): rows whose file name another row shares cannot be matched and fail.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import PurePosixPath

import polars as pl
import pyarrow.fs as pafs

from reid_core.data import files as rio
from reid_core.parts.mapping import KeypointMapping

COCO_KEYS = {"images", "annotations", "categories"}


class KeypointSourceError(ValueError):
    """A keypoint file is in neither format, or disagrees with the mapping (the message says the fix)."""


def file_name(uri: str) -> str:
    """The key rows and keypoint files are matched by."""
    return PurePosixPath(str(uri).replace("\\", "/")).name


def _is_flat(values: object) -> bool:
    return isinstance(values, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def read_flat(data: dict, uri: str, mapping: KeypointMapping) -> dict[str, list[float]]:
    """ATRW's format: file name -> flat list in the mapping's order."""
    expected = mapping.values_per_row
    for name, values in data.items():
        if len(values) != expected:
            raise KeypointSourceError(
                f"{uri}: entry {name!r} has {len(values)} numbers, mapping {mapping.source} orders "
                f"{len(mapping.names)} keypoints ({expected} numbers as x, y, v). Fix: pass the mapping these "
                "keypoints were made with (--mapping)")
    return {file_name(name): [float(v) for v in values] for name, values in data.items()}


def _visible_count(values: list[float], min_visibility: float) -> int:
    return sum(1 for v in values[2::3] if v > min_visibility)


def read_coco(data: dict, uri: str, mapping: KeypointMapping, min_visibility: float) -> dict[str, list[float]]:
    """COCO keypoints: each image's best annotation, its keypoints put in the mapping's order."""
    order = {}
    for category in data["categories"]:
        if not isinstance(category, dict) or "id" not in category or not isinstance(category.get("keypoints"), list):
            raise KeypointSourceError(f"{uri}: category {category!r} has no 'keypoints' list of names. Fix: write "
                                      "the keypoint names in each category, as COCO keypoint files do")
        where = f"{uri} category {category.get('name', category['id'])!r}"
        order[category["id"]] = (mapping.index(category["keypoints"], where), len(category["keypoints"]))
    names = {}
    for image in data["images"]:
        name = image.get("file_name", image.get("filename")) if isinstance(image, dict) else None
        if name is None or "id" not in image:
            raise KeypointSourceError(f"{uri}: image entry {image!r} needs 'id' and 'file_name'. Fix: write the "
                                      "images as COCO does")
        names[image["id"]] = file_name(name)
    repeated = [name for name, n in Counter(names.values()).items() if n > 1]
    if repeated:
        raise KeypointSourceError(f"{uri}: file names {repeated[:3]} occur in several images; keypoints are "
                                  "matched to rows by file name. Fix: split the file by folder, or put the "
                                  "keypoints in a manifest column (--keypoints COLUMN)")
    best: dict[str, list[float]] = {}
    for annotation in data["annotations"]:
        image_id, category = annotation.get("image_id"), annotation.get("category_id")
        if image_id not in names or category not in order:
            raise KeypointSourceError(f"{uri}: annotation {annotation.get('id')!r} refers to image {image_id!r} / "
                                      f"category {category!r}, which the file does not list. Fix: the file's "
                                      "images and categories must include every annotation's")
        positions, count = order[category]
        values = annotation.get("keypoints")
        if not _is_flat(values) or len(values) != 3 * count:
            raise KeypointSourceError(f"{uri}: annotation {annotation.get('id')!r} has keypoints {str(values)[:60]}, "
                                      f"expected {3 * count} numbers (x, y, v for each of its category's "
                                      f"{count} keypoints). Fix: correct that annotation")
        flat = [0.0] * mapping.values_per_row
        for k, position in enumerate(positions):
            flat[3 * position:3 * position + 3] = [float(v) for v in values[3 * k:3 * k + 3]]
        name = names[image_id]
        if name not in best or _visible_count(flat, min_visibility) > _visible_count(best[name], min_visibility):
            best[name] = flat
    return best


def read_keypoint_file(uri: str, mapping: KeypointMapping, min_visibility: float = 0.5,
                       filesystem: pafs.FileSystem | None = None) -> dict[str, list[float]]:
    """File name -> flat keypoints in the mapping's order, from an ATRW or a COCO keypoint file.
    ``filesystem`` is for s3:// URIs (local paths use the local one)."""
    filesystem = filesystem if rio.is_s3(uri) else None
    if not rio.exists(uri, filesystem):
        raise KeypointSourceError(f"keypoint file {uri} does not exist. Fix: pass an existing file, or the name of "
                                  "a manifest column, with --keypoints")
    try:
        data = json.loads(rio.read_bytes(uri, filesystem))
    except ValueError as error:
        raise KeypointSourceError(f"{uri} is not JSON ({error}). Fix: pass ATRW's reid_keypoints_*.json or a "
                                  "COCO keypoint file") from None
    if isinstance(data, dict) and COCO_KEYS <= set(data):
        return read_coco(data, uri, mapping, min_visibility)
    if isinstance(data, dict) and data and all(_is_flat(v) and v for v in data.values()):
        return read_flat(data, uri, mapping)
    shape = f"an object with keys {sorted(data)[:6]}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
    raise KeypointSourceError(f"{uri} is {shape}: neither ATRW's keypoints (an object of file name -> "
                              f"[x1, y1, v1, ...]) nor a COCO keypoint file (with {', '.join(sorted(COCO_KEYS))}). "
                              "Fix: pass one of those with --keypoints, or a manifest column of flat lists")


def read_keypoint_files(uris: list[str], mapping: KeypointMapping, min_visibility: float = 0.5,
                        filesystem: pafs.FileSystem | None = None) -> dict[str, list[float]]:
    """Several files (e.g. ATRW's train and test), one table; a file name they disagree on is an error."""
    table: dict[str, list[float]] = {}
    origin: dict[str, str] = {}
    for uri in uris:
        for name, values in read_keypoint_file(uri, mapping, min_visibility, filesystem).items():
            if name in table and table[name] != values:
                raise KeypointSourceError(f"{origin[name]} and {uri} give different keypoints for {name!r}; "
                                          "keypoints are matched to rows by file name. Fix: run once per file "
                                          "on the rows it covers (--species, separate manifests), or put the "
                                          "keypoints in a manifest column (--keypoints COLUMN)")
            table[name], origin[name] = values, uri
    return table


def _column_values(values: object, column: str, mapping: KeypointMapping) -> tuple[list[float] | None, str | None]:
    if values is None or len(values) == 0:
        return None, f"no keypoints: column '{column}' is empty for this row"
    if len(values) != mapping.values_per_row:
        return None, (f"column '{column}' has {len(values)} values, mapping {mapping.name} expects "
                      f"{mapping.values_per_row} ({len(mapping.names)} keypoints x (x, y, v))")
    return [math.nan if v is None else float(v) for v in values], None  # a null is an unusable keypoint


def keypoints_for_rows(df: pl.DataFrame, sources: list[str], mapping: KeypointMapping, min_visibility: float = 0.5,
                       filesystem: pafs.FileSystem | None = None) -> pl.DataFrame:
    """``_keypoints`` (flat, the mapping's order) and ``_keypoints_error`` (why a row has none) per row.

    ``sources`` is one manifest column or keypoint files (local or s3://)."""
    columns = [s for s in sources if s in df.columns]
    if columns and (len(sources) > 1):
        raise KeypointSourceError(f"--keypoints {' '.join(sources)}: give one manifest column, or keypoint files")
    if columns:
        column = columns[0]
        if not isinstance(df.schema[column], pl.List | pl.Array):
            raise KeypointSourceError(f"manifest column '{column}' is {df.schema[column]}, not a list of numbers. "
                                      "Fix: pass a column of flat [x1, y1, v1, ...] lists, or a keypoint file")
        pairs = [_column_values(v, column, mapping) for v in df[column].to_list()]
    else:
        table = read_keypoint_files(sources, mapping, min_visibility, filesystem)
        names = [file_name(uri) for uri in df["image_uri"].to_list()]
        shared = Counter(names)
        where = " / ".join(sources)
        pairs = []
        for name in names:
            if shared[name] > 1:
                pairs.append((None, f"file name {name!r} is shared by {shared[name]} rows, so keypoints matched by "
                                    "file name cannot tell them apart; put the keypoints in a manifest column "
                                    "(--keypoints COLUMN)"))
            elif name not in table:
                pairs.append((None, f"no keypoints for {name!r} in {where} (matched by the image's file name)"))
            else:
                pairs.append((table[name], None))
    return pl.DataFrame({"_keypoints": [p[0] for p in pairs], "_keypoints_error": [p[1] for p in pairs]},
                        schema={"_keypoints": pl.List(pl.Float64), "_keypoints_error": pl.String})
