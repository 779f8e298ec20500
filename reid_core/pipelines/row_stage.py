"""The row-stage template: a resumable per-row Ray Data job over a manifest (or any table of rows).

A stage is a worker and a schema. ``Stage`` declares the record each row gets (its status, error,
config and time columns), the manifest columns merged back, and what makes a row *done*; a worker is a
class built once per actor from a picklable spec that turns a batch of rows into records. The template
does the rest, the same way for every stage (segmentation, part masks, identify's embeddings, and the
detection and matching stages to come):

- plan (``plan``): the output folder is listed; temporary files a killed run left are removed; the
  journal is read; a row is done when its latest record has a done status, the record's outputs equal the
  row's targets and their files exist (and, for stages that say so, its config is this run's); the
  selected rows not done are the work;
- run (``execute``): an actor pool (``ActorPoolStrategy``, fractional GPUs allowed) maps the worker over
  the work in batches; a batch that raises becomes failed records, so the job goes on; each actor writes
  its batch's records to ``<output>/_journal/part-<uuid>.parquet`` after the batch's files;
- finish (``finish``): the latest record per row is merged into the manifest (every other column and
  the row order kept), which is written to ``<output>/manifest.parquet``, and the journal is compacted.

Every file is written atomically (``rio.write_bytes``), on local disks and s3:// alike, so a kill leaves
at most temporary siblings (removed by the next run) and rows without a record (redone). Two runs must
not write to the same output at the same time.
"""

from __future__ import annotations

import io
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from reid_core.data import files as rio
from reid_core.data import manifest as mf

JOURNAL_DIR = "_journal"
TMP_SUFFIX = re.compile(r"\.tmp-[0-9a-f]{32}$")  # what rio.write_bytes leaves behind when killed
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
CONFIG = "_config"  # plan column: the config this run would record per row


# --------------------------------------------------------------------------------------------------
# What a stage declares


@dataclass(frozen=True)
class Stage:
    """A stage's record and its rules. ``schema`` holds ``image_id`` and the ``status``, ``error``,
    ``config`` and ``time`` columns named here (the latest record of a row wins)."""

    name: str  # for progress lines and messages
    schema: pa.Schema  # one journal record per row
    status: str
    error: str
    config: str  # the settings that made the record, compared with the plan's ``_config``
    time: str  # unix time the record was made
    merged: dict[str, pl.DataType] = field(default_factory=dict)  # manifest columns set from the records
    done_statuses: tuple[str, ...] = ("ok",)
    targets: dict[str, str] = field(default_factory=dict)  # record column -> plan column it must equal
    files: tuple[str, ...] = ()  # plan columns naming files that must exist for a row to be done
    redo_other_config: bool = False  # a record made with other settings is redone (else: kept, with a note)

    def empty(self) -> pl.DataFrame:
        return pl.from_arrow(self.schema.empty_table())

    def failed(self, row: dict, error: BaseException | str) -> dict:
        """The record of a row the worker could not handle."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return {"image_id": row["image_id"], self.status: "failed", self.error: message,
                self.config: row.get(CONFIG)}


@dataclass(frozen=True)
class Pool:
    """The actor pool: one worker per actor, ``num_gpus`` per actor may be a fraction (0.5: two per GPU)."""

    actors: int = 1
    batch_size: int = 32
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    env: dict = field(default_factory=dict)  # environment variables for the actors


@dataclass
class StageReport:
    """What every stage reports; a stage's report adds its own fields."""

    output: str
    manifest_out: str
    rows: int
    selected: int
    skipped: int
    to_process: int
    processed: int = 0
    failed: int = 0
    statuses: dict = field(default_factory=dict)
    stale_temp_files_removed: int = 0
    ray_init_s: float = 0.0
    first_batch_s: float | None = None  # from the start of execution (actor start-up included)
    run_s: float = 0.0
    images_per_s: float | None = None
    images_per_s_after_first_batch: float | None = None
    failures: list = field(default_factory=list)  # (image_id, error), the first few
    notes: list = field(default_factory=list)
    dry_run: bool = False

    @classmethod
    def of(cls, plan: Plan, **extra):
        return cls(output=plan.output, manifest_out=plan.manifest_out, rows=plan.rows.height,
                   selected=int(plan.rows["_selected"].sum()), skipped=plan.skipped, to_process=plan.todo.height,
                   stale_temp_files_removed=plan.stale_removed, notes=list(plan.notes), **extra)

    def add_run(self, stage: Stage, fresh: pl.DataFrame, execution: Execution | None) -> None:
        """This run's counts, statuses, first failures and speed."""
        self.processed = fresh.height
        self.statuses = dict(sorted(fresh.group_by(stage.status).len().iter_rows())) if fresh.height else {}
        self.failed = self.statuses.get("failed", 0)
        failures = fresh.filter(pl.col(stage.status) == "failed")
        self.failures = [list(r) for r in failures.select("image_id", stage.error).head(10).iter_rows()]
        if execution is None:
            return
        self.notes += execution.notes
        self.ray_init_s, self.run_s, self.first_batch_s = execution.ray_init_s, execution.run_s, execution.first_batch_s
        if self.run_s > 0 and self.processed:
            self.images_per_s = self.processed / self.run_s
            after = self.run_s - (execution.first_batch_s or 0)
            if after > 0 and self.processed > execution.processed_at_first:
                self.images_per_s_after_first_batch = (self.processed - execution.processed_at_first) / after

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Plan


@dataclass
class Plan:
    rows: pl.DataFrame  # the input rows plus the plan's columns (targets, _config, _selected, _done, ...)
    columns: list[str]  # the input's own columns (what the updated manifest keeps)
    todo: pl.DataFrame  # the selected rows not done, at most ``limit``
    previous: pl.DataFrame  # journal records the output still backs: done rows, and failures
    foreign: pl.DataFrame  # journal records of image ids the rows do not have: kept as they are
    journal_files: list[str]
    output: str
    manifest_out: str
    skipped: int = 0
    stale_removed: int = 0
    notes: list = field(default_factory=list)

    def manifest(self) -> pl.DataFrame:
        return self.rows.select(self.columns)


def plan(stage: Stage, rows: pl.DataFrame, columns: list[str], output: str, *, selected: pl.Expr | None = None,
         limit: int | None = None, filesystem: pafs.FileSystem | None = None, clean: bool = True) -> Plan:
    """Which of ``rows`` (the input's ``columns`` plus the stage's target columns and ``_config``) this run
    does. ``clean`` removes the temporary files a killed run left (a dry run leaves everything as is)."""
    fs, files = list_files(output, filesystem)
    stale = remove_temp_files(fs, files, remove=clean)
    existing = set(files) - set(stale)
    records, journal = read_journal(output, stage.schema, stage.time, filesystem,
                                    files=journal_files(output, filesystem, list(existing)))
    own = [c for c in ("image_id", *stage.targets.values(), *stage.files, CONFIG) if c in rows.columns]
    joined = rows.select(list(dict.fromkeys(own))).with_columns(
        [pl.Series(f"_exists_{c}", [p in existing for p in stripped(rows[c].to_list(), output)]) for c in stage.files]
    ).join(records, on="image_id", how="left", maintain_order="left")
    done = pl.col(stage.status).is_in(list(stage.done_statuses)).fill_null(False)
    for column in stage.files:
        done &= pl.col(f"_exists_{column}")
    for record_column, plan_column in stage.targets.items():
        done &= (pl.col(record_column) == pl.col(plan_column)).fill_null(False)
    if stage.redo_other_config:
        done &= (pl.col(stage.config) == pl.col(CONFIG)).fill_null(False)
    joined = joined.with_columns(done.alias("_done"))
    rows = rows.with_columns(joined["_done"], (pl.lit(True) if selected is None else selected).alias("_selected"))
    previous = joined.filter(pl.col("_done") | (pl.col(stage.status) == "failed").fill_null(False)).select(
        records.columns)
    candidates = rows.filter(pl.col("_selected") & ~pl.col("_done"))
    todo = candidates.head(limit) if limit is not None else candidates
    skipped = joined.filter(rows["_selected"] & rows["_done"])
    result = Plan(rows, columns, todo, previous, records.filter(~pl.col("image_id").is_in(rows["image_id"].implode())),
                  journal, output, rio.join(output, "manifest.parquet"), skipped.height, len(stale) if clean else 0)
    if CONFIG in rows.columns and not stage.redo_other_config:
        other = skipped.filter(pl.col(stage.config) != pl.col(CONFIG))
        if other.height:
            result.notes.append(f"{other.height} finished rows skipped were made with other settings "
                                f"({other[stage.config][0]}); delete them or choose another --output to redo them")
    return result


# --------------------------------------------------------------------------------------------------
# Run: the actor pool, the journal


class StageActor:
    """One per actor: builds the stage's worker once (next to the GPU) and journals every batch. The
    worker is ``worker(spec)(rows: list[dict]) -> list[dict]`` (one record per row, files written first)."""

    def __init__(self, worker: type, spec: object, stage: Stage, journal_dir: str | None,
                 filesystem: pafs.FileSystem | None = None):
        self.worker, self.stage, self.journal_dir, self.filesystem = worker(spec), stage, journal_dir, filesystem

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        try:
            records = self.worker(rows)
        except Exception as error:  # the batch's rows fail, the job goes on
            records = [self.stage.failed(row, error) for row in rows]
        now = time.time()
        for record in records:
            record.setdefault(self.stage.time, now)
        table = pa.Table.from_pylist(records, schema=self.stage.schema)
        if self.journal_dir is not None:
            write_journal_part(self.journal_dir, table, self.filesystem)
        return table


@dataclass
class Execution:
    records: pl.DataFrame  # this run's records
    ray_init_s: float = 0.0
    run_s: float = 0.0
    first_batch_s: float | None = None
    processed_at_first: int = 0
    notes: list = field(default_factory=list)


def check_gpus(num_gpus: float, attaching: bool) -> str | None:
    """None when the cluster has the GPUs an actor asks for; a note when an autoscaler may add them."""
    import ray

    if num_gpus <= 0:
        return None
    available = ray.cluster_resources().get("GPU", 0)
    if available >= num_gpus:
        return None
    message = (f"{num_gpus} GPU per actor requested, the Ray cluster has {available}: "
               "run without --num-gpus, or on a cluster with GPUs")
    if not attaching:
        raise RuntimeError(message)
    return message + " (waiting for the autoscaler)"


def execute(stage: Stage, rows: pl.DataFrame, worker: type, spec: object, pool: Pool, *, journal_dir: str | None,
            filesystem: pafs.FileSystem | None = None, settings=None, verbose: bool = False,
            label: str | None = None, on_batch=None) -> Execution:
    """``worker`` over ``rows`` (the columns it reads) on an actor pool, journalled under ``journal_dir``
    (None: not journalled); Ray is started or attached first. ``on_batch(table)`` sees every finished batch."""
    from reid_core.pipelines import console
    from reid_core.pipelines.ray_runtime import init_ray

    execution = Execution(stage.empty())
    if settings is not None:
        started = time.perf_counter()
        init_ray(settings, verbose=verbose)
        console.configure_ray_data(verbose)
        execution.ray_init_s = time.perf_counter() - started
        note = check_gpus(pool.num_gpus, bool(settings.ray_address or os.environ.get("RAY_JOB_ID")))
        if note:
            execution.notes.append(note)
    table = rows.to_arrow(compat_level=pl.CompatLevel.oldest())
    actor_kwargs = {"worker": worker, "spec": spec, "stage": stage, "journal_dir": journal_dir,
                    "filesystem": filesystem}
    batches = map_rows(table, StageActor, actor_kwargs, batch_size=pool.batch_size, actors=pool.actors,
                       num_cpus=pool.num_cpus, num_gpus=pool.num_gpus, env=pool.env)
    results, failed, started = [], 0, time.perf_counter()
    with console.Progress(label or stage.name, table.num_rows, "images") as progress:
        for batch in batches:
            results.append(batch)
            if execution.first_batch_s is None:
                execution.first_batch_s = time.perf_counter() - started
                execution.processed_at_first = batch.num_rows
            if on_batch is not None:
                on_batch(batch)
            failed += batch.column(stage.status).to_pylist().count("failed")
            progress.advance(batch.num_rows, failed=failed)
        progress.close(f"{progress.done} images, {failed} failed")
    execution.run_s = time.perf_counter() - started
    if results:
        execution.records = pl.from_arrow(pa.concat_tables(results))
    return execution


# --------------------------------------------------------------------------------------------------
# Finish: the manifest, the journal


def finish(stage: Stage, plan: Plan, fresh: pl.DataFrame, filesystem: pafs.FileSystem | None = None, *,
           write_manifest: bool = True) -> pl.DataFrame:
    """The latest record per row (earlier runs' and this one's); the updated manifest written (stages
    that merge columns) and the journal compacted."""
    everything = pl.concat([plan.previous, fresh], how="diagonal_relaxed") if plan.previous.height else fresh
    everything = latest(everything, stage.time)
    if stage.merged and write_manifest:
        updated = mf.check(merge_records(plan.manifest(), everything, stage.merged, stage.time),
                           source=plan.manifest_out, disjoint=())
        mf.write(updated, plan.manifest_out, filesystem=fs_for(plan.manifest_out, filesystem))
    compact_journal(plan.output, pl.concat([plan.foreign, everything], how="diagonal_relaxed"), plan.journal_files,
                    filesystem)
    return everything


# --------------------------------------------------------------------------------------------------
# Pieces: names, folders, the journal files


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


def map_rows(table: pa.Table, actor: type, kwargs: dict, *, batch_size: int, actors: int, num_cpus: float,
             num_gpus: float = 0.0, env: dict | None = None) -> Iterator[pa.Table]:
    """``actor(**kwargs)`` on a pool of ``actors`` over ``table`` in batches; yields the result batches as
    they come. One block per batch: the actors share the work from the first batch on."""
    import ray

    blocks = [table.slice(i, batch_size) for i in range(0, table.num_rows, batch_size)]
    dataset = ray.data.from_arrow(blocks).map_batches(
        actor,
        fn_constructor_kwargs=kwargs,
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


def read_input(manifest: str, writes: tuple[str, ...], species: tuple[str, ...],
               filesystem: pafs.FileSystem | None = None) -> pl.DataFrame:
    """A stage's input manifest, read as every row stage reads it, after refusing a run whose outputs
    (``writes``) would overwrite it; the requested ``species`` must be in it."""
    source = fs_path(manifest, filesystem)
    if any(fs_path(uri, filesystem) == source for uri in writes):
        raise ValueError(f"the output would overwrite the input {manifest}: choose another --output")
    df = mf.read(manifest, filesystem=fs_for(manifest, filesystem), validate_kwargs={"disjoint": ()})
    check_species(df, species, manifest)
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
