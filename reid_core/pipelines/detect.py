"""Detection over a manifest of whole photos with Ray Data: every animal found, cropped and given its own
manifest row (resumable, per-photo failures, local or s3://); a row stage of ``row_stage``'s template.

Each actor builds its detector once from a picklable (name, options) pair, then per photo reads and
decodes it (as ``segment`` does), detects, keeps the boxes of the chosen categories at or above the score
threshold (best first, at most ``max_detections``), and writes, per photo id:
    <output>/<species>/crops/<image_id>_<k>.png        animal k, cropped with a margin
    <output>/<species>/ref_masks/<image_id>_<k>.png    its reference mask, cropped alike (where known)
    <output>/<species>/detections/<image_id>.json      the photo's boxes and crops, written after them
    <output>/_journal/part-<uuid>.parquet              one record per photo of the batch, written last
A photo is *done* when its record says ok (animals found) or empty (none above the threshold) and its
detections file exists; a rerun skips done photos and retries failed ones. At the end:
    <output>/manifest.parquet   one row per animal: the crop as ``image_uri`` (so segment, part masks,
                                train and identify take it as an image), ``photo_id``, the box in the
                                photo (``box_x0``..``box_y1``), ``det_score``, ``detector``,
                                ``detector_version``, and the photo's other columns
    <output>/photos.parquet     every input photo, kept, with ``det_status``, ``det_count``, ``det_error``
Empty photos are counted and listed (report and photos.parquet), never lost.
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
from reid_core.detection import registry
from reid_core.detection.boxes import clip, crop_window
from reid_core.pipelines import row_stage
from reid_core.pipelines.ray_runtime import worker_env
from reid_core.pipelines.row_stage import CONFIG, fs_for, output_name
from reid_core.pipelines.segment import DEFAULT_MAX_PIXELS, decode_image
from reid_core.settings import Settings

DEFAULT_METHOD = "megadetector"
DEFAULT_THRESHOLD = 0.2  # MegaDetector's usual confidence threshold for animals
DONE_STATUSES = ("ok", "empty")
PHOTO_COLUMNS = {"det_status": pl.String, "det_count": pl.Int64, "det_error": pl.String, "det_method": pl.String}
CROP_COLUMNS = {"photo_id": pl.String, "box_x0": pl.Float64, "box_y0": pl.Float64, "box_x1": pl.Float64,
                "box_y1": pl.Float64, "crop_left": pl.Int64, "crop_top": pl.Int64, "det_score": pl.Float64,
                "detector": pl.String, "detector_version": pl.String}
RESULT_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("det_status", pa.string()),  # ok / empty / failed
    ("det_error", pa.string()),
    ("det_method", pa.string()),
    ("det_version", pa.string()),  # the detector's weights
    ("det_count", pa.int64()),
    ("det_detections", pa.string()),  # JSON: [{box, score, category, crop_uri, window, labels}, ...]
    ("det_index_uri", pa.string()),  # the photo's detections file
    ("det_converted", pa.string()),
    ("det_seconds", pa.float64()),
    ("det_config", pa.string()),
    ("det_time", pa.float64()),
])
STAGE = row_stage.Stage(
    name="detect", schema=RESULT_SCHEMA, status="det_status", error="det_error", config="det_config",
    time="det_time", done_statuses=DONE_STATUSES, targets={"det_index_uri": "_det_target"}, files=("_det_target",))


@dataclass(frozen=True)
class DetectJob:
    manifest: str
    output: str | None = None  # default: <manifest's folder>/detected-<method>
    method: str = DEFAULT_METHOD
    options: dict = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD
    categories: tuple[str, ...] = ("animal",)
    max_detections: int = 20
    margin: float = 0.1  # the crop grows by this fraction of the box on every side
    crop_format: str = "png"  # or "jpg"
    species: tuple[str, ...] = ()
    limit: int | None = None
    actors: int = 1
    batch_size: int = 8
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    io_threads: int = 4
    max_pixels: int = DEFAULT_MAX_PIXELS
    worker_env: dict = field(default_factory=dict)

    def output_dir(self) -> str:
        if self.output:
            return rio.absolute(self.output).rstrip("/")
        parent = self.manifest.rsplit("/", 1)[0] if rio.is_s3(self.manifest) else os.path.dirname(
            rio.resolve(self.manifest)[1])
        return rio.join(parent, f"detected-{row_stage.slug(self.method)}")

    def config(self) -> str:
        options = {k: v for k, v in sorted(self.options.items()) if k != "device"}
        return json.dumps({"method": self.method, "options": options, "threshold": self.threshold,
                           "categories": list(self.categories), "max_detections": self.max_detections,
                           "margin": self.margin, "crop_format": self.crop_format}, sort_keys=True, default=str)


@dataclass
class DetectReport(row_stage.StageReport):
    photos_with_animals: int = 0
    animals: int = 0  # crop rows in the output manifest
    empty: int = 0  # photos with no animal above the threshold
    empty_photos: list = field(default_factory=list)  # their image ids (the first 20)
    photos_manifest: str = ""
    converted: dict = field(default_factory=dict)


def folder_target(output: str, folder: str) -> pl.Expr:
    """Per row ``<output>/<species>/<folder>/<image id as a path>`` (no extension: crops add ``_<k>.png``)."""
    name = pl.col("image_id").map_elements(output_name, return_dtype=pl.String)
    species = pl.col("species").map_elements(output_name, return_dtype=pl.String)
    sep = "/" if rio.is_s3(output) else os.sep
    return pl.concat_str([pl.lit(output), species, pl.lit(folder), name], separator=sep)


def make_plan(job: DetectJob, filesystem: pafs.FileSystem | None = None, *, clean: bool = True) -> row_stage.Plan:
    output = job.output_dir()
    if job.crop_format not in ("png", "jpg"):
        raise ValueError(f"crop_format must be png or jpg, got {job.crop_format!r}")
    df = row_stage.read_input(job.manifest, tuple(rio.join(output, name) for name in ("manifest.parquet", "photos.parquet")),
                              job.species, filesystem)
    df = df.drop([c for c in (*PHOTO_COLUMNS, *CROP_COLUMNS) if c in df.columns])
    columns = df.columns
    df = df.with_columns(row_stage.target(output, "detections", "json").alias("_det_target"),
                         folder_target(output, "crops").alias("_crop_base"),
                         folder_target(output, "ref_masks").alias("_ref_mask_base"),
                         pl.lit(job.config()).alias(CONFIG))
    row_stage.refuse_clashes(df, "_det_target")
    selected = pl.col("species").is_in(list(job.species)) if job.species else None
    return row_stage.plan(STAGE, df, columns, output, selected=selected, limit=job.limit, filesystem=filesystem,
                          clean=clean)


# --------------------------------------------------------------------------------------------------
# The actor


@dataclass(frozen=True)
class WorkerSpec:
    method: str
    options: dict
    threshold: float
    categories: tuple[str, ...]
    max_detections: int
    margin: float
    crop_format: str
    max_pixels: int
    io_threads: int
    config: str
    filesystem: pafs.FileSystem | None = None


class DetectWorker:
    """One per actor: the detector is built here, next to the GPU, and lives as long as the actor."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        if Image.MAX_IMAGE_PIXELS and spec.max_pixels >= Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = spec.max_pixels + 1
        self.detector = registry.build_detector(spec.method, spec.options)
        self.pool = ThreadPoolExecutor(max_workers=max(1, spec.io_threads))

    def _fs(self, uri: str) -> pafs.FileSystem | None:
        return fs_for(uri, self.spec.filesystem)

    def _read(self, row: dict) -> bytes | BaseException:
        try:
            return rio.read_bytes(row["image_uri"], self._fs(row["image_uri"]))
        except Exception as error:
            return error

    def _encode(self, array: np.ndarray, mode: str) -> bytes:
        image = Image.fromarray(array, mode)
        if mode == "RGB" and self.spec.crop_format == "jpg":
            return rio.encode_image(image, "JPEG", quality=95)
        return rio.encode_image(image, "PNG", compress_level=1)

    def _crops(self, row: dict, image: np.ndarray, detections: list) -> tuple[list[dict], list[tuple[str, bytes]]]:
        height, width = image.shape[:2]
        ext = "jpg" if self.spec.crop_format == "jpg" else "png"
        entries, files = [], []
        for k, det in enumerate(detections):
            box = clip(det.box, width, height)
            if box[2] <= box[0] or box[3] <= box[1]:
                continue  # a box outside the photo: nothing to crop
            left, top, right, bottom = crop_window(box, width, height, self.spec.margin)
            crop_uri = f"{row['_crop_base']}_{k}.{ext}"
            files.append((crop_uri, self._encode(np.ascontiguousarray(image[top:bottom, left:right]), "RGB")))
            labels = {key: value for key, value in det.labels.items() if key != "ref_mask_uri"}
            mask = det.mask
            if mask is None and det.labels.get("ref_mask_uri"):
                uri = det.labels["ref_mask_uri"]
                mask = np.asarray(rio.read_image(uri, self._fs(uri), mode="L")) > 127
            if mask is not None:
                if mask.shape != (height, width):
                    raise ValueError(f"animal {k}'s mask is {mask.shape[1]}x{mask.shape[0]}, the photo {width}x{height}")
                mask_uri = f"{row['_ref_mask_base']}_{k}.png"
                files.append((mask_uri, self._encode(mask[top:bottom, left:right].astype(np.uint8) * 255, "L")))
                labels["ref_mask_uri"] = mask_uri
            entries.append({"box": [float(v) for v in box], "score": float(det.score), "category": det.category,
                            "crop_uri": crop_uri, "window": [left, top, right, bottom], "labels": labels})
        return entries, files

    def _detect(self, row: dict, data: bytes | BaseException) -> tuple[dict, list[tuple[str, bytes]]]:
        record = {"image_id": row["image_id"], "det_status": "failed", "det_error": None,
                  "det_method": self.spec.method, "det_version": getattr(self.detector, "version", None),
                  "det_count": None, "det_detections": None, "det_index_uri": None, "det_converted": None,
                  "det_config": self.spec.config}
        try:
            if isinstance(data, BaseException):
                raise data
            image, record["det_converted"] = decode_image(data, self.spec.max_pixels)
            found = [d for d in self.detector.detect(image, row)
                     if d.score >= self.spec.threshold and d.category in self.spec.categories]
            found = sorted(found, key=lambda d: -d.score)[: self.spec.max_detections]
            entries, files = self._crops(row, image, found)
            index = json.dumps({"image_id": row["image_id"], "detector": self.spec.method,
                                "version": record["det_version"], "width": image.shape[1], "height": image.shape[0],
                                "detections": entries})
            files.append((row["_det_target"], index.encode()))  # last: with it present, the photo is done
            record.update(det_status="ok" if entries else "empty", det_count=len(entries),
                          det_detections=json.dumps(entries), det_index_uri=row["_det_target"])
            return record, files
        except Exception as error:
            record.update(det_status="failed", det_error=f"{type(error).__name__}: {error}")
            return record, []

    def _write(self, files: list[tuple[str, bytes]]) -> None:
        for uri, data in files:  # in order: the detections file after the crops
            rio.write_bytes(uri, data, self._fs(uri))

    def __call__(self, rows: list[dict]) -> list[dict]:
        blobs = self.pool.map(self._read, rows)
        records, writes = [], []
        for row, data in zip(rows, blobs, strict=True):
            started = time.perf_counter()
            record, files = self._detect(row, data)
            record["det_seconds"] = time.perf_counter() - started
            records.append(record)
            writes.append(self.pool.submit(self._write, files) if files else None)
        for record, pending in zip(records, writes, strict=True):
            if pending is not None:
                try:
                    pending.result()
                except Exception as error:
                    record.update(det_status="failed", det_error=f"{type(error).__name__}: {error}",
                                  det_index_uri=None, det_detections=None, det_count=None)
        return records


# --------------------------------------------------------------------------------------------------
# The manifests


def crop_rows(photos: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """One manifest row per detected animal: the photo's columns, the crop as the image, the box, the
    detector; the labels a detector knows (the reference's individual, entity, side, ref_mask_uri)."""
    done = records.filter(pl.col("det_status") == "ok")
    by_id = {row["image_id"]: row for row in photos.iter_rows(named=True)}
    drop = set(mf.OPTIONAL_SCHEMA) | {"ref_mask_uri", "ref_boxes_uri"}
    rows = []
    for record in done.iter_rows(named=True):
        photo = by_id.get(record["image_id"])
        if photo is None:
            continue
        base = {k: v for k, v in photo.items() if k not in drop}
        for k, entry in enumerate(json.loads(record["det_detections"])):
            x0, y0, x1, y1 = entry["box"]
            rows.append({**base, **entry["labels"], "image_id": f"{photo['image_id']}#{k}",
                         "image_uri": entry["crop_uri"], "photo_id": photo["image_id"], "box_x0": x0,
                         "box_y0": y0, "box_x1": x1, "box_y1": y1, "crop_left": entry["window"][0],
                         "crop_top": entry["window"][1], "det_score": entry["score"],
                         "detector": record["det_method"], "detector_version": record["det_version"]})
    schema = {**{c: t for c, t in photos.schema.items() if c not in drop}, "ref_mask_uri": pl.String,
              **CROP_COLUMNS}
    if not rows:
        return pl.DataFrame(schema=schema)
    return mf.conform(pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None))


def photo_rows(photos: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """Every input photo, kept, with its detection status and count."""
    return row_stage.merge_records(row_stage.with_columns_of(photos, PHOTO_COLUMNS), records, PHOTO_COLUMNS,
                                   "det_time")


# --------------------------------------------------------------------------------------------------
# The driver


def check_options(method: str, options: dict) -> None:
    registry.parse_options(method, options)


def _execute(job: DetectJob, plan: row_stage.Plan, filesystem: pafs.FileSystem | None, settings: Settings,
             verbose: bool = False) -> row_stage.Execution:
    options = dict(job.options)
    if job.num_gpus > 0 and "device" not in options and "device" in (registry.option_names(job.method) or ()):
        options["device"] = "cuda"
    s3 = rio.is_s3(plan.output) or rio.is_s3(job.manifest)
    spec = WorkerSpec(method=job.method, options=options, threshold=job.threshold, categories=tuple(job.categories),
                      max_detections=job.max_detections, margin=job.margin, crop_format=job.crop_format,
                      max_pixels=job.max_pixels, io_threads=job.io_threads, config=job.config(),
                      filesystem=filesystem if s3 else None)
    pool = row_stage.Pool(actors=job.actors, batch_size=job.batch_size, num_cpus=job.num_cpus,
                          num_gpus=job.num_gpus, env=worker_env() | dict(job.worker_env))
    keep = [c for c in plan.todo.columns if c not in ("_done", "_selected")]
    return row_stage.execute(STAGE, plan.todo.select(keep), DetectWorker, spec, pool,
                             journal_dir=rio.join(plan.output, row_stage.JOURNAL_DIR), filesystem=spec.filesystem,
                             settings=settings, verbose=verbose, label=f"detect {job.method}")


def run(job: DetectJob, *, filesystem: pafs.FileSystem | None = None, settings: Settings | None = None,
        dry_run: bool = False, verbose: bool = False) -> DetectReport:
    """Detect animals in the selected photos not done yet; write the crops and both manifests."""
    settings = settings or Settings.from_env()
    plan = make_plan(job, filesystem, clean=not dry_run)
    report = DetectReport.of(plan, dry_run=dry_run)
    report.photos_manifest = rio.join(plan.output, "photos.parquet")
    if dry_run:
        return report
    execution = _execute(job, plan, filesystem, settings, verbose) if plan.todo.height else None
    fresh = execution.records if execution else STAGE.empty()
    everything = row_stage.finish(STAGE, plan, fresh, filesystem, write_manifest=False)
    everything = everything.join(plan.rows.select("image_id"), on="image_id", how="semi")
    photos = plan.manifest()
    crops = crop_rows(photos, everything)
    out_fs = fs_for(plan.manifest_out, filesystem)
    mf.write(mf.check(crops, source=plan.manifest_out, disjoint=()), plan.manifest_out, filesystem=out_fs)
    mf.write(mf.check(photo_rows(photos, everything), source=report.photos_manifest, disjoint=()),
             report.photos_manifest, filesystem=out_fs)
    report.add_run(STAGE, fresh, execution)
    report.animals = crops.height
    report.photos_with_animals = int((everything["det_status"] == "ok").sum())
    empty = everything.filter(pl.col("det_status") == "empty")["image_id"].to_list()
    report.empty, report.empty_photos = len(empty), empty[:20]
    converted = fresh.filter(pl.col("det_converted").is_not_null())
    report.converted = dict(sorted(converted.group_by("det_converted").len().iter_rows())) if len(converted) else {}
    return report
