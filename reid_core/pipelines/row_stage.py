"""What the resumable per-row Ray Data stages share (segmentation, part masks).

A stage writes files per manifest row under an output folder, and one journal record per row to
``<output>/_journal/part-<uuid>.parquet`` after the row's files: a rerun reads the journal to skip
finished rows. Every file is written atomically (``rio.write_bytes``), so a kill leaves at most
temporary siblings (removed by the next run) and rows without a record (redone). At the end the
journal is compacted into one file. Each stage keeps its own record schema and its own rule for
"done"; the folder, the journal and the actor pool are the same.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from collections.abc import Iterator

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from reid_core.data import files as rio

JOURNAL_DIR = "_journal"
TMP_SUFFIX = re.compile(r"\.tmp-[0-9a-f]{32}$")  # what rio.write_bytes leaves behind when killed
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def output_name(image_id: str) -> str:
    """A relative path for an image id: '/' keeps making folders, other odd characters become '_'."""
    parts = [_UNSAFE.sub("_", part) for part in str(image_id).split("/")]
    return "/".join(part if part not in ("", ".", "..") else "_" for part in parts)


def slug(text: str) -> str:
    """A folder-name-safe form of a method or mapping name (``sam+isnet`` -> ``sam-isnet``)."""
    return _UNSAFE.sub("-", text.replace("+", "-").replace(":", "-")).strip("-") or "method"


def fs_for(uri: str, filesystem: pafs.FileSystem | None) -> pafs.FileSystem | None:
    """The injected filesystem is for s3:// URIs; local paths always use the local filesystem."""
    return filesystem if rio.is_s3(uri) else None


def fs_path(uri: str, filesystem: pafs.FileSystem | None) -> str:
    return rio.resolve(uri, fs_for(uri, filesystem))[1]


def list_files(root: str, filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, list[str]]:
    """(filesystem, paths inside it) of every file under ``root``; none when it does not exist."""
    fs, path = rio.resolve(root, fs_for(root, filesystem))
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return fs, [info.path for info in infos if info.type == pafs.FileType.File]


def remove_temp_files(fs: pafs.FileSystem, paths: list[str], *, remove: bool = True) -> list[str]:
    """The temporary files a killed run left among ``paths`` (deleted unless ``remove`` is false)."""
    stale = [p for p in paths if TMP_SUFFIX.search(p)]
    for path in stale if remove else ():
        try:
            fs.delete_file(path)
        except OSError:
            pass
    return stale


def stripped(uris: list[str], output: str) -> list[str]:
    """Targets under ``output`` (already absolute) as paths inside its filesystem: no resolving needed."""
    strip = len(rio.S3_SCHEME) if rio.is_s3(output) else 0
    return [u[strip:] for u in uris]


def latest(records: pl.DataFrame, time_column: str) -> pl.DataFrame:
    """The latest record per image id (a rerun's record replaces the earlier one)."""
    return records.sort(time_column, maintain_order=True).unique("image_id", keep="last", maintain_order=True)


def read_journal(output: str, schema: pa.Schema, time_column: str, filesystem: pafs.FileSystem | None = None,
                 files: list[str] | None = None) -> tuple[pl.DataFrame, list[str]]:
    """All records under ``<output>/_journal`` (the latest per image id) and the files they came from."""
    fs, paths = list_files(rio.join(output, JOURNAL_DIR), filesystem) if files is None else (None, files)
    fs = fs or rio.resolve(output, fs_for(output, filesystem))[0]
    paths = sorted(p for p in paths if p.endswith(".parquet") and not TMP_SUFFIX.search(p))
    frames = []
    for path in paths:
        with fs.open_input_stream(path) as stream:
            frames.append(pl.read_parquet(io.BytesIO(stream.read())))
    if not frames:
        return pl.from_arrow(schema.empty_table()), paths
    return latest(pl.concat(frames, how="diagonal_relaxed"), time_column), paths


def journal_files(output: str, filesystem: pafs.FileSystem | None, files: list[str]) -> list[str]:
    """Those of ``files`` (paths inside the output's filesystem) that lie in the journal folder."""
    prefix = fs_path(rio.join(output, JOURNAL_DIR), filesystem).rstrip("/") + "/"
    return [p for p in files if p.startswith(prefix)]


def write_journal_part(journal_dir: str, table: pa.Table, filesystem: pafs.FileSystem | None) -> None:
    """A batch's records, written after the batch's files (an actor's last step per batch)."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    target = rio.join(journal_dir, f"part-{uuid.uuid4().hex}.parquet")
    rio.write_bytes(target, buffer.getvalue(), fs_for(target, filesystem))


def compact_journal(output: str, records: pl.DataFrame, old: list[str], filesystem: pafs.FileSystem | None) -> None:
    """Fold every journal part into one file; a kill in between leaves duplicates the reader resolves."""
    fs, written = list_files(rio.join(output, JOURNAL_DIR), filesystem)
    buffer = io.BytesIO()
    records.write_parquet(buffer)
    target = rio.join(output, JOURNAL_DIR, f"compacted-{uuid.uuid4().hex}.parquet")
    rio.write_bytes(target, buffer.getvalue(), fs_for(target, filesystem))
    for path in set(old) | {p for p in written if p.endswith(".parquet")}:
        try:
            fs.delete_file(path)
        except OSError:
            pass


def merge_records(rows: pl.DataFrame, records: pl.DataFrame, columns: dict[str, pl.DataType],
                  time_column: str) -> pl.DataFrame:
    """``rows`` with the latest record's ``columns`` per image id; rows without a record keep theirs."""
    joined = rows.join(
        latest(records, time_column).select("image_id", *columns).rename({c: f"_new_{c}" for c in columns})
        .with_columns(pl.lit(True).alias("_has")), on="image_id", how="left", maintain_order="left")
    has = pl.col("_has").fill_null(False)
    return joined.with_columns(
        [pl.when(has).then(pl.col(f"_new_{c}")).otherwise(pl.col(c)).cast(dtype).alias(c)
         for c, dtype in columns.items()]).select(rows.columns)


def map_rows(table: pa.Table, worker: type, spec: object, *, batch_size: int, actors: int, num_cpus: float,
             num_gpus: float = 0.0, env: dict | None = None) -> Iterator[pa.Table]:
    """``worker(spec)`` on a pool of ``actors`` over ``table`` in batches; yields the result batches as
    they come. One block per batch: the actors share the work from the first batch on."""
    import ray

    blocks = [table.slice(i, batch_size) for i in range(0, table.num_rows, batch_size)]
    dataset = ray.data.from_arrow(blocks).map_batches(
        worker,
        fn_constructor_kwargs={"spec": spec},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
        **({"runtime_env": {"env_vars": env}} if env else {}),
    )
    yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")


def with_columns_of(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``df`` with every column of ``schema``, of its type (missing ones as nulls)."""
    for column, dtype in schema.items():
        if column not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=dtype).alias(column))
        elif df.schema[column] != dtype:
            df = df.with_columns(pl.col(column).cast(dtype))
    return df


def check_species(df: pl.DataFrame, species: tuple[str, ...], manifest: str) -> None:
    unknown = sorted(set(species) - set(df["species"].unique()))
    if unknown:
        raise ValueError(f"species {unknown} not in {manifest}; it has {sorted(df['species'].unique())}")


def target(output: str, folder: str, ext: str) -> pl.Expr:
    """Per row ``<output>/<species>/<folder>/<image id as a path>.<ext>``."""
    name = pl.col("image_id").map_elements(output_name, return_dtype=pl.String)
    species = pl.col("species").map_elements(output_name, return_dtype=pl.String)
    sep = "/" if rio.is_s3(output) else os.sep
    return pl.concat_str([pl.lit(output), species, pl.lit(folder), pl.format("{}.{}", name, pl.lit(ext))],
                         separator=sep)


def refuse_clashes(df: pl.DataFrame, column: str) -> None:
    """Two rows must not write one file (image ids that differ only in replaced characters)."""
    clash = df.filter(pl.col(column).is_duplicated())
    if len(clash):
        raise ValueError(f"image ids {clash['image_id'].head(4).to_list()} map to the same output file "
                         f"({clash[column][0]}): make image_id unique after replacing characters "
                         "outside [A-Za-z0-9._-/] with '_'")
