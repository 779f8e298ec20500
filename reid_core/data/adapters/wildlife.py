"""WildlifeDatasets-style ``metadata.csv`` (AnimalCLEF2025, WildlifeReID-10k, ...) as a manifest.

Conventions (datasets.md section 4): ``identity`` NaN or "unknown" marks an image of unknown identity
(AnimalCLEF queries); ``split`` is train/test, or database/query for AnimalCLEF2025, which become test
rows with role gallery/query. WildlifeReID-10k's split shares identities between train and test, so
this adapter does not require disjoint splits.
"""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl

from reid_core.data import manifest
from reid_core.data.adapters._inputs import (
    DatasetFormatError,
    read_csv,
    require_columns,
    root_dir,
    under,
)

DEFAULT_METADATA = "metadata.csv"
UNKNOWN_IDENTITIES = {"", "nan", "none", "null", "unknown"}  # pandas writes NaN as an empty field or "nan"
SPLITS = {  # metadata split -> (manifest split, role)
    "train": ("train", None),
    "test": ("test", None),
    "database": ("test", "gallery"),
    "query": ("test", "query"),
}
GENERATED = {*manifest.CORE_SCHEMA, "source_image_id", "original_split"}  # names this adapter writes


def load_wildlife(
    root: str | Path,
    *,
    metadata: str | Path = DEFAULT_METADATA,
    prefix: str | None = None,
    species: str | None = None,
    drop_unknown: bool = False,
    check_files: bool = False,
) -> pl.DataFrame:
    """Every metadata row (paths relative to ``root``); other columns are kept as string extras.

    ``image_id`` becomes ``<prefix>/<image_id or row number>`` (prefix defaults to the root's folder
    name); the original id stays in ``source_image_id`` and the split value in ``original_split``.
    ``species`` comes from the species column, else the dataset column, else ``species``. Non-query
    rows of unknown identity are an error unless ``drop_unknown`` (WildlifeDatasets' ``remove_unknown``).
    Extra columns whose names the manifest uses (e.g. ``side``) are kept as ``metadata_<name>``.
    """
    base = root_dir(root)
    path = under(base, metadata)
    table = read_csv(path, "WildlifeDatasets metadata", "--metadata")
    split_column = "split" if "split" in table.columns else "original_split"  # a saved WD DataFrame
    require_columns(table, ["identity", "path", split_column], path)
    table = table.with_row_index("__row")  # WildlifeDatasets numbers rows when there is no image_id
    source_id = pl.col("image_id") if "image_id" in table.columns else pl.col("__row").cast(pl.String)
    identity = pl.col("identity").str.strip_chars()
    unknown = identity.is_null() | identity.str.to_lowercase().is_in(sorted(UNKNOWN_IDENTITIES))
    split_key = pl.col(split_column).str.strip_chars().str.to_lowercase()

    _check_splits(table, split_key, split_column, path)
    table = table.with_columns(
        source_id.alias("__source_id"),
        pl.col(split_column).alias("__original_split"),
        unknown.alias("__unknown"),
        split_key.replace_strict({k: v[0] for k, v in SPLITS.items()}).alias("__split"),
        split_key.replace_strict({k: v[1] for k, v in SPLITS.items()}, return_dtype=pl.String).alias("__role"),
        _species(table, species, path).alias("__species"),
    )
    table = _unknown_identities(table, path, drop_unknown)
    extras = [c for c in table.columns if not c.startswith("__") and c not in ("image_id", "species", split_column)]
    df = table.select(
        (pl.lit(f"{prefix or base.name}/") + pl.col("__source_id")).alias("image_id"),
        pl.col("path").map_elements(lambda p: str(under(base, p)), return_dtype=pl.String).alias("image_uri"),
        pl.col("__species").alias("species"),
        pl.when(pl.col("__unknown")).then(None).otherwise(identity).alias("individual"),
        pl.when(pl.col("__unknown")).then(None).otherwise(identity).alias("entity"),
        _side(table).alias("side"),
        pl.col("__split").alias("split"),
        pl.when(pl.col("__unknown")).then(pl.lit("query")).otherwise(pl.col("__role")).alias("role"),
        pl.col("__source_id").alias("source_image_id"),
        pl.col("__original_split").alias("original_split"),
        *[pl.col(c).alias(f"metadata_{c}" if c in GENERATED else c) for c in extras],
    )
    df = manifest.conform(df)
    return manifest.check(df, source=f"WildlifeDatasets metadata {path}", disjoint=(), check_files=check_files)


def _check_splits(table: pl.DataFrame, split_key: pl.Expr, column: str, path: Path) -> None:
    bad = table.filter(split_key.is_null() | ~split_key.is_in(list(SPLITS)))
    if len(bad):
        row = bad.row(0, named=True)
        raise DatasetFormatError(
            f"{path.name} line {row['__line']} ({len(bad)} row(s) in all): unknown {column} {row[column]!r}. "
            f"Fix: use one of {', '.join(SPLITS)}"
        )


def _species(table: pl.DataFrame, default: str | None, path: Path) -> pl.Expr:
    """Lower-cased species column, else dataset column, else ``default``; rows left without one are an error."""
    sources = [pl.col(c).map_elements(_species_name, return_dtype=pl.String) for c in ("species", "dataset")
               if c in table.columns]
    expr = pl.coalesce(*sources, pl.lit(_species_name(default), dtype=pl.String))
    missing = table.filter(expr.is_null())
    if len(missing):
        raise DatasetFormatError(
            f"{path.name} line {missing['__line'][0]} ({len(missing)} row(s) in all): no species (no "
            "'species' or 'dataset' value). Fix: pass --species NAME or fill the species column"
        )
    return expr


def _species_name(value: str | None) -> str | None:
    """'Lynx' -> 'lynx'; a CSV round-tripped list "['lynx', 'cat']" -> 'lynx+cat'."""
    value = (value or "").strip()
    if value.startswith("["):
        try:
            value = "+".join(str(v).strip() for v in ast.literal_eval(value) if str(v).strip())
        except (ValueError, SyntaxError):
            value = value.strip("[]'\" ")
    return None if value.lower() in ("", "nan", "none") else value.lower()


def _side(table: pl.DataFrame) -> pl.Expr:
    if "orientation" not in table.columns:
        return pl.lit("unknown")
    side = pl.col("orientation").str.strip_chars().str.to_lowercase()
    return pl.when(side.is_in(["left", "right"])).then(side).otherwise(pl.lit("unknown"))


def _unknown_identities(table: pl.DataFrame, path: Path, drop: bool) -> pl.DataFrame:
    """Unknown identity is an open-set query on test rows; on train/database rows it carries no label."""
    unlabelled = pl.col("__unknown") & ((pl.col("__split") != "test") | (pl.col("__role") == "gallery"))
    bad = table.filter(unlabelled)
    if len(bad) == 0 or drop:
        return table.filter(~unlabelled)
    row = bad.row(0, named=True)
    raise DatasetFormatError(
        f"{path.name} line {row['__line']} ({len(bad)} row(s) in all): identity {row['identity']!r} "
        f"is unknown on a {row['__original_split']!r} row, which needs a label. Fix: fill the identity, or pass "
        "--drop-unknown to drop such rows (WildlifeDatasets' remove_unknown)"
    )
