"""Background removal over a whole manifest with Ray Data: resumable, idempotent, per-row errors.

The driver reads the manifest (local or s3://), works out which rows are already done and hands the
rest to a pool of actors (``ray.data.ActorPoolStrategy``; ``num_gpus`` per actor may be a fraction).
Each actor builds its segmenter once from a picklable (name, options) pair, then for every row reads
the bytes, decodes them (odd modes converted to 8-bit RGB, absurd sizes refused), segments, masks and
writes, per image id:

    <output>/<species>/masks/<image_id>.png       the mask (255 = animal)
    <output>/<species>/masked/<image_id>.png      the masked image (background filled, optionally cropped)
    <output>/_journal/part-<uuid>.parquet         one record per row of the batch, written last

Every file is written atomically (write-then-rename locally, one PUT on S3). A row is *done* when its
journal record says ok / fallback / flagged and both image files exist; a rerun skips done rows, redoes
rows that a killed run left half-written (a mask without its masked image, images without a record)
and retries failed ones (the plan, journal, actor pool and merge are ``row_stage``'s template). Temporary files left by a kill are removed at the start of the next run. At the
end the updated manifest (``mask_uri``, ``masked_uri``, ``seg_method``, ``seg_status``, ``seg_error``;
every other column and the row order kept) is written to ``<output>/manifest.parquet`` and the journal
is compacted into one file. Two runs must not write to the same output at the same time.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
from PIL import Image

from reid_core.data import files as rio
from reid_core.data import manifest as mf
from reid_core.pipelines import row_stage
from reid_core.pipelines.ray_runtime import worker_env
from reid_core.pipelines.row_stage import CONFIG, fs_for, output_name  # noqa: F401 (callers import output_name here)
from reid_core.segmentation import registry
from reid_core.segmentation.masking import MaskingConfig, apply_mask, mask_from_png, mask_to_png
from reid_core.segmentation.quality import mask_iou
from reid_core.settings import Settings

DEFAULT_METHOD = "sam+isnet"
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's own warning threshold
DONE_STATUSES = ("ok", "fallback", "flagged")
SEG_COLUMNS = tuple(mf.SEGMENTATION_SCHEMA)

RESULT_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("mask_uri", pa.string()),
    ("masked_uri", pa.string()),
    ("seg_method", pa.string()),
    ("seg_status", pa.string()),
    ("seg_error", pa.string()),
    ("seg_converted", pa.string()),  # what decoding converted, e.g. "CMYK->RGB"
    ("seg_iou", pa.float64()),  # IoU against the reference mask, where the manifest has one
    ("seg_criterion", pa.string()),  # the fusion criterion the segmenter applied, where it says
    ("seg_seconds", pa.float64()),  # decode + segment + mask, per row (reads and writes overlap)
    ("seg_config", pa.string()),  # the settings that produced the row (method, options, masking)
    ("seg_time", pa.float64()),  # unix time the record was made: the latest record of a row wins
])
STAGE = row_stage.Stage(
    name="segment", schema=RESULT_SCHEMA, status="seg_status", error="seg_error", config="seg_config",
    time="seg_time", merged=mf.SEGMENTATION_SCHEMA, done_statuses=DONE_STATUSES,
    targets={"mask_uri": "_mask_target", "masked_uri": "_masked_target"}, files=("_mask_target", "_masked_target"))


class ImageTooLarge(ValueError):
    pass


# --------------------------------------------------------------------------------------------------
# Pure pieces: decoding, names (``output_name`` lives in row_stage, shared with the part masks)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str | None]:
    """Bytes -> (H x W x 3 uint8 RGB, what was converted or None).

    Grayscale, palette, CMYK and other modes are converted to RGB; 16-bit data is scaled to 8 bits
    (not clipped); alpha is composited onto white. Images over ``max_pixels`` are refused before their
    pixels are decoded; corrupt or truncated files raise Pillow's errors.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is checked below
        image = rio.open_image(data)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"{width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,}: "
                            "downscale the image or raise --max-pixels")
    image.load()  # truncated files fail here, not halfway through the segmenter
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image), None
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image).astype(np.float64)
        sixteen_bit = mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255)
        if sixteen_bit:
            values = values / 257.0
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        note = f"{mode}->RGB" + (" (16-bit scaled to 8-bit)" if sixteen_bit else "")
        return np.repeat(gray[..., None], 3, axis=2), note
    if "A" in mode or "a" in mode or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")), f"{mode}->RGB (alpha on white)"
    return np.asarray(image.convert("RGB")), f"{mode}->RGB"


def method_slug(method: str) -> str:
    return row_stage.slug(method)


# --------------------------------------------------------------------------------------------------
# The job and its plan


@dataclass(frozen=True)
class SegmentJob:
    manifest: str
    output: str | None = None  # default: <manifest's folder>/segmented-<method>
    method: str = DEFAULT_METHOD  # a registered name, or "package.module:builder" for your own
    options: dict = field(default_factory=dict)
    masking: MaskingConfig = MaskingConfig()
    species: tuple[str, ...] = ()  # empty: all
    limit: int | None = None  # at most this many rows are processed in this run (after skipping done rows)
    actors: int = 1
    batch_size: int = 8
    num_gpus: float = 0.0  # per actor; fractions share a GPU
    num_cpus: float = 1.0  # per actor
    io_threads: int = 4  # per actor: reads and writes overlap with segmentation
    max_pixels: int = DEFAULT_MAX_PIXELS
    masked_format: str = "png"  # or "jpg"
    quality: bool = True  # IoU against `ref_column` where the manifest has it
    ref_column: str = "ref_mask_uri"
    # Environment variables for the actors, on top of the S3 settings forwarded from the driver (the
    # endpoint and region, never credentials: workers use their own, or a job's runtime_env).
    worker_env: dict = field(default_factory=dict)

    def output_dir(self) -> str:
        if self.output:
            return rio.absolute(self.output).rstrip("/")
        if rio.is_s3(self.manifest):
            parent = self.manifest.rsplit("/", 1)[0]
        else:
            parent = os.path.dirname(rio.resolve(self.manifest)[1])
        return rio.join(parent, f"segmented-{method_slug(self.method)}")

    def manifest_out(self) -> str:
        return rio.join(self.output_dir(), "manifest.parquet")

    def config(self) -> str:
        """What makes two runs' outputs comparable (the device is not part of it)."""
        options = {k: v for k, v in sorted(self.options.items()) if k != "device"}
        return json.dumps({"method": self.method, "options": options, "masking": asdict(self.masking),
                           "masked_format": self.masked_format}, sort_keys=True, default=str)


@dataclass
class SegmentReport(row_stage.StageReport):
    converted: dict = field(default_factory=dict)  # what decoding converted, e.g. {"CMYK->RGB": 2}
    iou_mean: float | None = None  # against the reference masks, where the manifest has them
    iou_min: float | None = None
    iou_rows: int = 0


def read_journal(output: str, filesystem: pafs.FileSystem | None = None,
                 files: list[str] | None = None) -> tuple[pl.DataFrame, list[str]]:
    """All records under ``<output>/_journal`` (the latest per image id) and the files they came from."""
    return row_stage.read_journal(output, RESULT_SCHEMA, "seg_time", filesystem, files)


def make_plan(job: SegmentJob, filesystem: pafs.FileSystem | None = None, *, clean: bool = True) -> row_stage.Plan:
    """Read the manifest and the output folder; decide what this run does. ``clean`` removes the
    temporary files a killed run left (a dry run leaves everything as it is)."""
    output, manifest_out = job.output_dir(), job.manifest_out()
    if job.masked_format not in ("png", "jpg"):
        raise ValueError(f"masked_format must be png or jpg, got {job.masked_format!r}")
    df = row_stage.read_input(job.manifest, (manifest_out,), job.species, filesystem)
    df = row_stage.with_columns_of(df, mf.SEGMENTATION_SCHEMA)
    columns = df.columns
    ext = "jpg" if job.masked_format == "jpg" else "png"
    df = df.with_columns(row_stage.target(output, "masks", "png").alias("_mask_target"),
                         row_stage.target(output, "masked", ext).alias("_masked_target"),
                         pl.lit(job.config()).alias(CONFIG))
    row_stage.refuse_clashes(df, "_mask_target")
    selected = pl.col("species").is_in(list(job.species)) if job.species else None
    return row_stage.plan(STAGE, df, columns, output, selected=selected, limit=job.limit, filesystem=filesystem,
                          clean=clean)


# --------------------------------------------------------------------------------------------------
# The actor


@dataclass(frozen=True)
class WorkerSpec:
    method: str
    options: dict
    masking: MaskingConfig
    max_pixels: int
    masked_format: str
    quality: bool
    ref_column: str
    io_threads: int
    config: str
    filesystem: pafs.FileSystem | None = None  # for s3:// URIs; None: from the settings


def build(method: str, options: dict):
    """A segmenter from a registered name, or from ``package.module:builder`` (your own code)."""
    return registry.build_segmenter(method, options)


def check_options(method: str, options: dict) -> None:
    """Refuse options the segmenter cannot take before any actor starts (a typo would fail every actor)."""
    registry.parse_options(method, options)


class SegmentWorker:
    """One per actor: the segmenter is built here, next to the GPU, and lives as long as the actor."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        if Image.MAX_IMAGE_PIXELS and spec.max_pixels >= Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = spec.max_pixels + 1  # this actor's process: our own limit applies
        self.segmenter = build(spec.method, spec.options)
        self.pool = ThreadPoolExecutor(max_workers=max(1, spec.io_threads))

    def _fs(self, uri: str) -> pafs.FileSystem | None:
        return fs_for(uri, self.spec.filesystem)

    def _read(self, row: dict) -> bytes | BaseException:
        try:
            return rio.read_bytes(row["image_uri"], self._fs(row["image_uri"]))
        except Exception as error:  # recorded per row
            return error

    def _write(self, mask_uri: str, mask: np.ndarray, masked_uri: str, masked: np.ndarray) -> None:
        # The mask first, the masked image last: with both present (and a journal record) the row is done.
        rio.write_bytes(mask_uri, rio.encode_image(mask_to_png(mask), "PNG", compress_level=1), self._fs(mask_uri))
        image = Image.fromarray(masked, "RGB")
        data = (rio.encode_image(image, "JPEG", quality=95) if self.spec.masked_format == "jpg"
                else rio.encode_image(image, "PNG", compress_level=1))
        rio.write_bytes(masked_uri, data, self._fs(masked_uri))

    def _iou(self, row: dict, mask: np.ndarray) -> float | None:
        uri = row.get(self.spec.ref_column)
        if not self.spec.quality or not uri:
            return None
        try:
            reference = mask_from_png(rio.read_image(uri, self._fs(uri), mode="L"))
        except Exception:
            return None
        return mask_iou(mask, reference) if reference.shape == mask.shape else None

    def _segment(self, row: dict, data: bytes | BaseException) -> tuple[dict, tuple | None]:
        record = {"image_id": row["image_id"], "mask_uri": None, "masked_uri": None, "seg_method": self.spec.method,
                  "seg_status": "failed", "seg_error": None, "seg_converted": None, "seg_iou": None,
                  "seg_criterion": None, "seg_config": self.spec.config}
        try:
            if isinstance(data, BaseException):
                raise data
            image, record["seg_converted"] = decode_image(data, self.spec.max_pixels)
            result = self.segmenter.segment(image, row)
            record["seg_method"] = result.method or self.spec.method
            criterion = (result.details or {}).get("criterion")
            record["seg_criterion"] = None if criterion is None else str(criterion)
            if result.status == "failed":
                record["seg_error"] = result.error or "the segmenter failed without saying why"
                return record, None
            mask = result.mask
            if mask is None:  # flagged without a mask: the whole frame is kept
                mask = np.ones(image.shape[:2], dtype=bool)
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != image.shape[:2]:
                raise ValueError(f"the segmenter returned a {mask.shape} mask for a {image.shape[:2]} image")
            # Flagged: nothing was accepted; the image is kept as it is for a person to look at.
            masked = image if result.status == "flagged" else apply_mask(image, mask, self.spec.masking)
            record.update(seg_status=result.status, seg_error=result.error, seg_iou=self._iou(row, mask),
                          mask_uri=row["_mask_target"], masked_uri=row["_masked_target"])
            return record, (row["_mask_target"], mask, row["_masked_target"], masked)
        except Exception as error:
            record.update(seg_status="failed", seg_error=f"{type(error).__name__}: {error}")
            return record, None

    def __call__(self, rows: list[dict]) -> list[dict]:
        blobs = self.pool.map(self._read, rows)  # reads run ahead of segmentation
        records, writes = [], []
        for row, data in zip(rows, blobs, strict=True):
            started = time.perf_counter()
            record, outputs = self._segment(row, data)
            record["seg_seconds"] = time.perf_counter() - started
            records.append(record)
            writes.append(self.pool.submit(self._write, *outputs) if outputs else None)
        for record, pending in zip(records, writes, strict=True):
            if pending is not None:
                try:
                    pending.result()
                except Exception as error:
                    record.update(seg_status="failed", seg_error=f"{type(error).__name__}: {error}",
                                  mask_uri=None, masked_uri=None)
        return records  # the template journals them, after the files


# --------------------------------------------------------------------------------------------------
# The driver


def _execute(job: SegmentJob, plan: row_stage.Plan, filesystem: pafs.FileSystem | None, settings: Settings,
             verbose: bool = False) -> row_stage.Execution:
    options = dict(job.options)
    if job.num_gpus > 0 and "device" not in options and "device" in (registry.option_names(job.method) or ()):
        options["device"] = "cuda"
    s3 = rio.is_s3(plan.output) or rio.is_s3(job.manifest)
    spec = WorkerSpec(method=job.method, options=options, masking=job.masking, max_pixels=job.max_pixels,
                      masked_format=job.masked_format, quality=job.quality, ref_column=job.ref_column,
                      io_threads=job.io_threads, config=job.config(), filesystem=filesystem if s3 else None)
    # Actors attached to a running Ray do not see this shell's variables: pass the S3 endpoint on.
    pool = row_stage.Pool(actors=job.actors, batch_size=job.batch_size, num_cpus=job.num_cpus,
                          num_gpus=job.num_gpus, env=worker_env() | dict(job.worker_env))
    # The whole row goes to the segmenter (some need more than pixels), less the old segmentation values.
    keep = [c for c in plan.todo.columns if c not in SEG_COLUMNS and c not in ("_done", "_selected")]
    return row_stage.execute(STAGE, plan.todo.select(keep), SegmentWorker, spec, pool,
                             journal_dir=rio.join(plan.output, row_stage.JOURNAL_DIR), filesystem=spec.filesystem,
                             settings=settings, verbose=verbose, label=f"segment {job.method}")


def run(job: SegmentJob, *, filesystem: pafs.FileSystem | None = None, settings: Settings | None = None,
        dry_run: bool = False, verbose: bool = False) -> SegmentReport:
    """Segment the selected rows that are not done yet; write the outputs and the updated manifest."""
    settings = settings or Settings.from_env()
    plan = make_plan(job, filesystem, clean=not dry_run)
    report = SegmentReport.of(plan, dry_run=dry_run)
    if dry_run:
        return report
    execution = _execute(job, plan, filesystem, settings, verbose) if plan.todo.height else None
    fresh = execution.records if execution else STAGE.empty()
    everything = row_stage.finish(STAGE, plan, fresh, filesystem)
    report.add_run(STAGE, fresh, execution)
    converted = fresh.filter(pl.col("seg_converted").is_not_null())
    report.converted = dict(sorted(converted.group_by("seg_converted").len().iter_rows())) if len(converted) else {}
    ious = everything.join(plan.rows.select("image_id"), on="image_id")["seg_iou"].drop_nulls()
    if len(ious):
        report.iou_mean, report.iou_min, report.iou_rows = float(ious.mean()), float(ious.min()), len(ious)
    return report
