"""The data contract: one row per image, a polars DataFrame stored as Parquet.

Every adapter produces a manifest, every stage reads it and adds columns. The validator reports
*every* problem at once, each naming the source, the row and the fix, so nothing downstream guesses.
Extra columns (keypoints, date, orientation, ...) are allowed and carried along untouched.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl
import pyarrow.fs as pafs

from reid_core.data import files as rio

CORE_SCHEMA: dict[str, pl.DataType] = {
    "image_id": pl.String,
    "image_uri": pl.String,
    "species": pl.String,
    "individual": pl.String,
    "entity": pl.String,
    "side": pl.String,
    "camera": pl.String,
    "frame": pl.Int64,
    "split": pl.String,
    "role": pl.String,
}
SEGMENTATION_SCHEMA: dict[str, pl.DataType] = {
    "mask_uri": pl.String,
    "masked_uri": pl.String,
    "seg_method": pl.String,
    "seg_status": pl.String,
    "seg_error": pl.String,
    "seg_config": pl.String,  # JSON: the segmenter and masking settings (identify prepares new photos alike)
}
PARTS_SCHEMA: dict[str, pl.DataType] = {
    "parts_uri": pl.String,  # a label map PNG in reid_core.parts.schemes.LABELS
    "parts_status": pl.String,  # workflows/part_masks.py: ok / failed
    "parts_error": pl.String,
    "parts_config": pl.String,  # JSON: the keypoint source, mapping and settings that produced the row
}
OPTIONAL_SCHEMA = {**SEGMENTATION_SCHEMA, **PARTS_SCHEMA}

# Columns that may be null. `individual`/`entity` only on query rows (open-set queries of unknown identity).
NULLABLE = {"camera", "frame", "role", *OPTIONAL_SCHEMA}
SPLITS = ("train", "val", "test")
SIDES = ("left", "right", "unknown")
ROLES = ("query", "gallery", "both")
SEG_STATUSES = ("ok", "fallback", "flagged", "failed", "skipped")
PARTS_STATUSES = ("ok", "failed")

MAX_REPORTED_ROWS = 5  # per problem kind; the count of all offending rows is always given


@dataclass(frozen=True)
class ManifestProblem:
    message: str
    fix: str
    rows: tuple[int, ...] = ()
    column: str | None = None
    n_rows: int = 0
    image_ids: tuple[str, ...] = ()

    def format(self, source: str) -> str:
        where = source
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:MAX_REPORTED_ROWS])
            more = f" and {self.n_rows - MAX_REPORTED_ROWS} more" if self.n_rows > MAX_REPORTED_ROWS else ""
            where += f" row{'s' if self.n_rows > 1 else ''} {shown}{more}"
            if self.image_ids:
                where += f" (image_id {', '.join(repr(i) for i in self.image_ids)})"
        if self.column:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}. Fix: {self.fix}"


class ManifestError(ValueError):
    def __init__(self, source: str, problems: list[ManifestProblem]):
        self.source = source
        self.problems = problems
        lines = [p.format(source) for p in problems]
        super().__init__(f"{len(problems)} problem(s) in manifest {source} (rows count from 0):\n- " + "\n- ".join(lines))


def _image_ids(df: pl.DataFrame, rows: tuple[int, ...]) -> tuple[str, ...]:
    """The offending rows' image ids, so users can trace a row back to its source file."""
    if "image_id" not in df.columns or df.schema["image_id"] != pl.String:
        return ()
    return tuple(str(df["image_id"][r]) for r in rows)


def _problem(df: pl.DataFrame, mask: pl.Expr, message: str, fix: str, column: str | None) -> ManifestProblem | None:
    idx = df.with_row_index("__row").filter(mask)["__row"].to_list()
    if not idx:
        return None
    rows = tuple(idx[:MAX_REPORTED_ROWS])
    return ManifestProblem(message=message, fix=fix, rows=rows, column=column, n_rows=len(idx),
                           image_ids=_image_ids(df, rows))


def validate(
    df: pl.DataFrame,
    *,
    disjoint: Iterable[tuple[str, str]] = (("train", "test"),),
    check_files: bool = False,
    filesystem: pafs.FileSystem | None = None,
) -> list[ManifestProblem]:
    """Every problem in ``df``; an empty list means the manifest honours the contract.

    ``disjoint`` lists split pairs whose entities must not overlap (train/test for closed-world
    protocols; pass ``()`` where a protocol shares identities across splits).
    """
    problems: list[ManifestProblem | None] = []
    missing = [c for c in CORE_SCHEMA if c not in df.columns]
    for column in missing:
        problems.append(
            ManifestProblem(
                message=f"required column '{column}' is missing",
                fix=f"add a '{column}' column of type {CORE_SCHEMA[column]} (null where unknown, if allowed)",
                column=column,
            )
        )
    expected = {**CORE_SCHEMA, **OPTIONAL_SCHEMA}
    wrong_type = set()
    for column, dtype in expected.items():
        if column in df.columns and df.schema[column] != dtype and df.schema[column] != pl.Null:
            wrong_type.add(column)
            problems.append(
                ManifestProblem(
                    message=f"has type {df.schema[column]}, expected {dtype}",
                    fix=f"cast it, e.g. df.with_columns(pl.col('{column}').cast(pl.{dtype}))",
                    column=column,
                )
            )
    usable = {c for c in expected if c in df.columns and c not in wrong_type}

    for column in (c for c in CORE_SCHEMA if c in usable and c not in NULLABLE and c not in ("individual", "entity")):
        problems.append(
            _problem(df, pl.col(column).is_null() | (pl.col(column) == "" if expected[column] == pl.String else False),
                     "is empty", f"give every row a {column}", column)
        )
    if {"individual", "role"} <= usable:
        for column in ("individual", "entity"):
            if column in usable:
                problems.append(
                    _problem(df, pl.col(column).is_null() & (pl.col("role").fill_null("") != "query"),
                             "is empty on a row that is not a query",
                             f"set {column}; only query rows of unknown identity (role='query') may leave it empty",
                             column)
                )
    if "image_id" in usable:
        problems.append(
            _problem(df, pl.col("image_id").is_duplicated() & pl.col("image_id").is_not_null(),
                     "duplicate image_id", "make image_id unique, e.g. prefix it with the dataset or folder",
                     "image_id")
        )
    for column, allowed in (("split", SPLITS), ("side", SIDES), ("role", ROLES), ("seg_status", SEG_STATUSES),
                            ("parts_status", PARTS_STATUSES)):
        if column in usable:
            problems.append(
                _problem(df, pl.col(column).is_not_null() & ~pl.col(column).is_in(allowed),
                         f"unknown {column} value (e.g. {_first_bad(df, column, allowed)!r})",
                         f"use one of {', '.join(allowed)}", column)
            )
    if {"split", "entity"} <= usable:
        for a, b in disjoint:
            shared = set(df.filter(pl.col("split") == a)["entity"].drop_nulls()) & set(
                df.filter(pl.col("split") == b)["entity"].drop_nulls()
            )
            if shared:
                example = sorted(shared)[:3]
                problems.append(
                    _problem(df, pl.col("entity").is_in(sorted(shared)) & (pl.col("split") == b),
                             f"{len(shared)} entities (e.g. {example}) are in both '{a}' and '{b}'",
                             "move each entity to one split, or validate with disjoint=() if the protocol shares identities",
                             "entity")
                )
    if check_files and "image_uri" in usable:
        absent = [
            i for i, uri in enumerate(df["image_uri"].to_list()) if uri and not rio.exists(uri, filesystem)
        ]
        if absent:
            problems.append(
                ManifestProblem(message=f"image file does not exist (e.g. {df['image_uri'][absent[0]]!r})",
                                fix="check the dataset root and the image-folder options of the adapter, or drop these rows",
                                rows=tuple(absent[:MAX_REPORTED_ROWS]), column="image_uri", n_rows=len(absent),
                                image_ids=_image_ids(df, tuple(absent[:MAX_REPORTED_ROWS])))
            )
    return [p for p in problems if p is not None]


def _first_bad(df: pl.DataFrame, column: str, allowed: tuple[str, ...]) -> str | None:
    bad = df.filter(pl.col(column).is_not_null() & ~pl.col(column).is_in(allowed))[column]
    return bad[0] if len(bad) else None


def check(df: pl.DataFrame, source: str = "<manifest>", **kwargs) -> pl.DataFrame:
    """Validate and return ``df`` unchanged, or raise ManifestError listing every problem."""
    problems = validate(df, **kwargs)
    if problems:
        raise ManifestError(source, problems)
    return df


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Add missing nullable core columns as typed nulls and put core columns first.

    Adapters build only what they know and call this; it never invents identities or splits.
    """
    additions = [
        pl.lit(None, dtype=dtype).alias(column)
        for column, dtype in CORE_SCHEMA.items()
        if column not in df.columns and column in NULLABLE
    ]
    df = df.with_columns(additions) if additions else df
    casts = [pl.col(c).cast(t) for c, t in {**CORE_SCHEMA, **OPTIONAL_SCHEMA}.items()
             if c in df.columns and df.schema[c] == pl.Null]
    df = df.with_columns(casts) if casts else df
    core = [c for c in CORE_SCHEMA if c in df.columns]
    return df.select(core + [c for c in df.columns if c not in CORE_SCHEMA])


def read(uri: str, *, filesystem: pafs.FileSystem | None = None, validate_kwargs: dict | None = None) -> pl.DataFrame:
    """Read a Parquet manifest (local or s3://) and validate it."""
    if not rio.exists(uri, filesystem):
        raise FileNotFoundError(f"manifest {uri} does not exist: create it with `python -m reid_core.data.convert` "
                                "or `python -m reid_core synthetic`")
    df = pl.read_parquet(io.BytesIO(rio.read_bytes(uri, filesystem)))
    return check(df, source=str(uri), **(validate_kwargs or {}))


def write(df: pl.DataFrame, uri: str, *, filesystem: pafs.FileSystem | None = None) -> None:
    """Write a manifest atomically (local or s3://)."""
    buffer = io.BytesIO()
    df.write_parquet(buffer)
    rio.write_bytes(uri, buffer.getvalue(), filesystem)


def summary(df: pl.DataFrame) -> pl.DataFrame:
    """Images, individuals and entities per species and split: what the CLIs print."""
    return (
        df.group_by("species", "split")
        .agg(
            pl.len().alias("images"),
            pl.col("individual").drop_nulls().n_unique().alias("individuals"),
            pl.col("entity").drop_nulls().n_unique().alias("entities"),
        )
        .sort("species", "split")
    )
