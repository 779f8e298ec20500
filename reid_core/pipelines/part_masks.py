"""Part masks for PAW-ViT over a whole manifest with Ray Data: resumable, per-row errors, local or s3://.

From each row's keypoints (``reid_core.parts.keypoints``: ATRW's or COCO files, matched by file name,
or a manifest column) and its foreground mask (``mask_uri``, from workflows/segment.py) a pool of actors
makes the label map PAW-ViT distils (``reid_core.parts.render``) and writes, per image id:

    <output>/<species>/parts/<image_id>.png    64 x 64 labels in reid_core.parts.schemes.LABELS (0 background)
    <output>/_journal/part-<uuid>.parquet      one record per row of the batch, written last

The map covers the frame of the row's masked image: where segmentation cropped it to the animal
(``seg_config``'s masking), the mask is cropped with the same box and the keypoints moved into it, so
image and labels stay aligned (the dataset resizes the map to the image). Rows without keypoints,
without a readable mask or without foreground are recorded as failed (``parts_status``, ``parts_error``)
and the job goes on. The journal and the folder work as segmentation's (``row_stage``): a rerun skips
rows whose record is ok and whose file exists, and retries failures. At the end the manifest, with
``parts_uri``, ``parts_status``, ``parts_error`` and ``parts_config`` and everything else kept, is written
to ``<output>/manifest.parquet``. Two runs must not write to the same output at the same time.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
from PIL import Image

from reid_core.data import files as rio
from reid_core.data import manifest as mf
from reid_core.parts.keypoints import keypoints_for_rows
from reid_core.parts.mapping import DEFAULT_MAPPING, KeypointMapping, load_mapping
from reid_core.parts.render import DEFAULT_SIZE, MIN_VISIBILITY, PartMaskError, part_label_map
from reid_core.parts.schemes import SCHEMES, scheme_for
from reid_core.pipelines import row_stage
from reid_core.pipelines.ray_runtime import worker_env
from reid_core.pipelines.row_stage import CONFIG, fs_for
from reid_core.segmentation.masking import mask_from_png, masked_box, masking_of
from reid_core.settings import Settings

KEYPOINT_COLUMN = "keypoints"  # the default source: the ATRW adapter's column
PARTS_COLUMNS = tuple(mf.PARTS_SCHEMA)
_SEG_INPUTS = ("mask_uri", "seg_status", "seg_error", "seg_config")
_WORKER_COLUMNS = ("image_id", *_SEG_INPUTS, "_parts_target", CONFIG, "_keypoints", "_keypoints_error")

RESULT_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("parts_uri", pa.string()),
    ("parts_status", pa.string()),
    ("parts_error", pa.string()),
    ("parts_config", pa.string()),
    ("parts_seconds", pa.float64()),  # read + render + write, per row
    ("parts_time", pa.float64()),  # unix time the record was made: the latest record of a row wins
])
STAGE = row_stage.Stage(name="part masks", schema=RESULT_SCHEMA, status="parts_status", error="parts_error",
                        config="parts_config", time="parts_time", merged=mf.PARTS_SCHEMA,
                        targets={"parts_uri": "_parts_target"}, files=("_parts_target",))


@dataclass(frozen=True)
class PartMaskJob:
    manifest: str
    output: str | None = None  # default: <manifest's folder>/parts-<mapping>
    keypoints: tuple[str, ...] = ()  # keypoint files, or one manifest column; empty: the `keypoints` column
    mapping: str = DEFAULT_MAPPING  # a shipped mapping's name or a mapping file
    scheme: str | None = None  # the part scheme every row is checked against; None: each row's species
    species: tuple[str, ...] = ()  # empty: all
    size: int = DEFAULT_SIZE
    min_visibility: float = MIN_VISIBILITY
    actors: int = 1
    batch_size: int = 32
    num_cpus: float = 1.0  # per actor
    io_threads: int = 4  # per actor: rows are read, rendered and written concurrently
    worker_env: dict = field(default_factory=dict)  # on top of the forwarded S3 endpoint and region

    def sources(self) -> tuple[str, ...]:
        return self.keypoints or (KEYPOINT_COLUMN,)

    def output_dir(self, mapping_name: str | None = None) -> str:
        if self.output:
            return rio.absolute(self.output).rstrip("/")
        if rio.is_s3(self.manifest):
            parent = self.manifest.rsplit("/", 1)[0]
        else:
            parent = os.path.dirname(rio.resolve(self.manifest)[1])
        return rio.join(parent, f"parts-{row_stage.slug(mapping_name or self.mapping)}")

    def config(self, mapping: KeypointMapping, scheme: str, columns: list[str]) -> str:
        """What makes two runs' masks comparable (recorded per row as ``parts_config``); ``columns``: the
        manifest's, to tell keypoint columns from files."""
        sources = [s if s in columns else rio.absolute(s) for s in self.sources()]
        return json.dumps({"keypoints": sources, "mapping": mapping.name, "mapping_digest": mapping.digest,
                           "scheme": scheme, "size": self.size, "min_visibility": self.min_visibility},
                          sort_keys=True)


@dataclass
class PartMaskReport(row_stage.StageReport):
    pass


@dataclass
class Plan(row_stage.Plan):
    mapping: KeypointMapping | None = None  # the mapping read once, shipped to the actors


def _schemes(df: pl.DataFrame, job: PartMaskJob, mapping: KeypointMapping) -> pl.Expr:
    """Each selected row's scheme name, checked: it exists and the mapping can label all its parts."""
    if job.scheme and job.scheme not in SCHEMES:
        raise ValueError(f"--scheme {job.scheme}: no such part scheme; known are {', '.join(SCHEMES)} "
                         "(add one to reid_core/parts/schemes.py)")
    for name in sorted({job.scheme} if job.scheme else set(df["species"].unique())):
        mapping.check_covers(scheme_for(name))
    return pl.lit(job.scheme) if job.scheme else pl.col("species")


def make_plan(job: PartMaskJob, filesystem: pafs.FileSystem | None = None, *, clean: bool = True) -> Plan:
    """Read the manifest, the keypoints and the output folder; decide what this run does. ``clean``
    removes the temporary files a killed run left (a dry run leaves everything as it is)."""
    if job.size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {job.size}")
    mapping = load_mapping(job.mapping, filesystem)
    output = job.output_dir(mapping.name)
    manifest_out = rio.join(output, "manifest.parquet")
    df = row_stage.read_input(job.manifest, (manifest_out,), job.species, filesystem)
    df = row_stage.with_columns_of(df, mf.PARTS_SCHEMA)
    selected = pl.col("species").is_in(list(job.species)) if job.species else pl.lit(True)
    scheme = _schemes(df.filter(selected), job, mapping)
    if job.keypoints == () and KEYPOINT_COLUMN not in df.columns:
        raise ValueError(f"{job.manifest} has no '{KEYPOINT_COLUMN}' column: pass --keypoints FILE (ATRW's "
                         "reid_keypoints_*.json or a COCO keypoint file) or --keypoints COLUMN")
    keypoints = keypoints_for_rows(df, list(job.sources()), mapping, job.min_visibility, filesystem)
    configs = {name: job.config(mapping, name, df.columns) for name in df.select(scheme.alias("s"))["s"].unique().to_list()}
    columns = df.columns
    df = pl.concat([df, keypoints], how="horizontal").with_columns(
        row_stage.target(output, "parts", "png").alias("_parts_target"),
        scheme.replace_strict(configs, return_dtype=pl.String).alias(CONFIG))
    row_stage.refuse_clashes(df, "_parts_target")
    plan = row_stage.plan(STAGE, df, columns, output, selected=selected, filesystem=filesystem, clean=clean)
    return Plan(**vars(plan), mapping=mapping)


# --------------------------------------------------------------------------------------------------
# The actor


@dataclass(frozen=True)
class WorkerSpec:
    mapping: KeypointMapping
    size: int
    min_visibility: float
    io_threads: int
    filesystem: pafs.FileSystem | None = None  # for s3:// URIs; None: from the settings


def frame(mask: np.ndarray, values: list[float], row: dict) -> tuple[np.ndarray, np.ndarray]:
    """The mask and keypoints on the frame of the row's masked image: cropped as segmentation cropped
    it (segment.py keeps flagged rows' images whole), keypoints moved into the crop."""
    box = None if row.get("seg_status") == "flagged" else masked_box(mask, masking_of(row.get("seg_config")))
    keypoints = np.asarray(values, dtype=np.float64).reshape(-1, 3).copy()
    if box is not None:
        left, top, right, bottom = box
        mask = mask[top:bottom, left:right]
        keypoints[:, 0] -= left
        keypoints[:, 1] -= top
    return mask, keypoints.ravel()


class PartMaskWorker:
    """One per actor: renders and writes the label maps of its batches, then their journal record."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.pool = ThreadPoolExecutor(max_workers=max(1, spec.io_threads))

    def _fs(self, uri: str) -> pafs.FileSystem | None:
        return fs_for(uri, self.spec.filesystem)

    def _mask(self, row: dict) -> np.ndarray:
        uri = row["mask_uri"]
        if not uri:
            why = f" (segmentation {row['seg_status']}: {row['seg_error']})" if row.get("seg_status") else ""
            raise PartMaskError(f"no foreground mask: mask_uri is empty{why}; segment this row first "
                                "(workflows/segment.py)")
        try:
            return mask_from_png(rio.read_image(uri, self._fs(uri), mode="L"))
        except Exception as error:
            raise PartMaskError(f"mask {uri} cannot be read ({type(error).__name__}: {error})") from None

    def _row(self, row: dict) -> dict:
        started = time.perf_counter()
        record = {"image_id": row["image_id"], "parts_uri": None, "parts_status": "failed", "parts_error": None,
                  "parts_config": row[CONFIG]}
        try:
            if row["_keypoints"] is None:
                raise PartMaskError(row["_keypoints_error"] or "no keypoints")
            mask, keypoints = frame(self._mask(row), row["_keypoints"], row)
            labels = part_label_map(mask, keypoints, self.spec.mapping, self.spec.size, self.spec.min_visibility)
            target = row["_parts_target"]
            rio.write_bytes(target, rio.encode_image(Image.fromarray(labels, "L"), "PNG"), self._fs(target))
            record.update(parts_uri=target, parts_status="ok")
        except PartMaskError as error:
            record["parts_error"] = str(error)
        except Exception as error:  # anything else is recorded too: the job goes on
            record["parts_error"] = f"{type(error).__name__}: {error}"
        record["parts_seconds"] = time.perf_counter() - started
        return record

    def __call__(self, rows: list[dict]) -> list[dict]:
        return list(self.pool.map(self._row, rows))  # the template journals them, after the files


# --------------------------------------------------------------------------------------------------
# The driver


def _execute(job: PartMaskJob, plan: Plan, filesystem: pafs.FileSystem | None, settings: Settings,
             verbose: bool) -> row_stage.Execution:
    s3 = rio.is_s3(plan.output) or rio.is_s3(job.manifest)
    spec = WorkerSpec(mapping=plan.mapping, size=job.size, min_visibility=job.min_visibility,
                      io_threads=job.io_threads, filesystem=filesystem if s3 else None)
    # A manifest need not come from segment.py: its columns the actors read are null where absent.
    rows = row_stage.with_columns_of(plan.todo, {c: mf.SEGMENTATION_SCHEMA[c] for c in _SEG_INPUTS})
    pool = row_stage.Pool(actors=job.actors, batch_size=job.batch_size, num_cpus=job.num_cpus,
                          env=worker_env() | dict(job.worker_env))
    return row_stage.execute(STAGE, rows.select(_WORKER_COLUMNS), PartMaskWorker, spec, pool,
                             journal_dir=rio.join(plan.output, row_stage.JOURNAL_DIR), filesystem=spec.filesystem,
                             settings=settings, verbose=verbose, label=f"part masks {plan.mapping.name}")


def run(job: PartMaskJob, *, filesystem: pafs.FileSystem | None = None, settings: Settings | None = None,
        dry_run: bool = False, verbose: bool = False) -> PartMaskReport:
    """Make the part masks of the selected rows not done yet; write them and the updated manifest."""
    settings = settings or Settings.from_env()
    plan = make_plan(job, filesystem, clean=not dry_run)
    report = PartMaskReport.of(plan, dry_run=dry_run)
    if dry_run:
        return report
    execution = _execute(job, plan, filesystem, settings, verbose) if plan.todo.height else None
    fresh = execution.records if execution else STAGE.empty()
    row_stage.finish(STAGE, plan, fresh, filesystem)
    report.add_run(STAGE, fresh, execution)
    return report
