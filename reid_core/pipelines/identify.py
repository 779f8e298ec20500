"""Identify the animals in new photos with a registered model: which known individual is each, and
which are individuals never seen before.

    images (DIR | MANIFEST | s3://prefix) --[background removal as the model was trained]--> embeddings
    gallery MANIFEST (known individuals) -----------------------------[cached per model x data]--> embeddings
    per image: top-k known individuals by cosine similarity (optionally k-reciprocal re-ranked), and
    "new" when the distance to the nearest gallery image exceeds the open-set threshold (calibrated on
    the validation split at publishing; ``threshold`` overrides it).

Outputs under ``out``: ``identifications.parquet`` / ``.csv``, ``sheets/<image>.png`` and ``index.html``.
Embedding is a row stage (``row_stage``, ``embed_ray.STAGE``): its records are journalled per batch under
``out/_journal``, so a rerun (or a run after a kill) embeds only the images not done yet with this model
version and augmentation; decisions are recomputed every run.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from reid_core import tracking
from reid_core.data import files as rio
from reid_core.data import manifest as mf
from reid_core.data.dataset import select_images
from reid_core.lifecycle import gallery_cache
from reid_core.lifecycle.open_set_calibration import IDENTITY_COLUMN, THRESHOLD_TAG
from reid_core.pipelines import embed_ray, row_stage
from reid_core.pipelines.embed_ray import EmbedSpec, as_matrix
from reid_core.pipelines.ray_runtime import worker_env
from reid_core.settings import Settings

EXPERIMENT = "reid-identify"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class IdentifyJob:
    model: str  # reid-dve-tiger@production, reid-dve-tiger/3 or models:/reid-dve-tiger@production
    images: str  # a folder (local or s3://) of images, or a manifest (.parquet)
    gallery: str  # a manifest of the known individuals (its rows of the model's species)
    out: str | None = None  # default: REID_HOME/identify/<model name>-v<version>
    top_k: int = 5
    threshold: float | None = None  # None: the model version's calibrated threshold
    flip_tta: bool = False
    rerank: bool = False
    actors: int = 1
    batch_size: int = 32
    num_cpus: float = 1.0
    num_gpus: float = 0.0  # per actor; fractions share a GPU
    cache: str | None = None  # gallery cache root; default REID_HOME/gallery-cache
    sheets: bool = True
    verbose: bool = False  # Ray's and Ray Data's own progress output


@dataclass
class IdentifyReport:
    model: str
    version: str
    out: str
    threshold: float
    threshold_source: str
    images: int = 0
    embedded: int = 0  # this run
    skipped: int = 0  # embedded by an earlier run
    failed: int = 0
    known: int = 0
    new: int = 0
    gallery_images: int = 0
    gallery_individuals: int = 0
    gallery_cache: str = ""  # hit / miss
    gallery_left_out: int = 0
    images_per_s: float | None = None
    run_id: str = ""
    failures: list = field(default_factory=list)  # (image_id, error), the first few
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    version: str
    uri: str  # models:/<name>/<version>
    metadata: dict
    tags: dict


def parse_model(spec: str) -> tuple[str, str | None, str | None]:
    """(name, version, alias) from ``name@alias``, ``name/version`` or ``models:/...`` forms."""
    body = spec.removeprefix("models:/")
    if "@" in body:
        name, alias = body.split("@", 1)
        return name, None, alias
    if "/" in body:
        name, version = body.rsplit("/", 1)
        if not version.isdigit():
            raise ValueError(f"--model {spec!r}: after '/' comes a version number (reid-dve-tiger/3)")
        return name, version, None
    raise ValueError(f"--model {spec!r} names no version: use NAME@ALIAS (reid-dve-tiger@production) or NAME/VERSION")


def resolve_model(spec: str, settings: Settings) -> ResolvedModel:
    from reid_core.tracking.models import model_metadata
    from reid_core.tracking.versions import get_version

    name, version, alias = parse_model(spec)
    found = get_version(name, version=version, alias=alias, settings=settings)
    uri = f"models:/{name}/{found.version}"
    metadata: dict[str, Any] = model_metadata(uri, settings)
    if "species" not in metadata:
        raise ValueError(f"{uri} has no species in its metadata; publish models with reid_core.lifecycle.publish")
    return ResolvedModel(name, str(found.version), uri, metadata, dict(found.tags))


def query_rows(images: str, species: str) -> pl.DataFrame:
    """image_id and image_uri (plus masked_uri / ref masks a manifest has) of the photos to identify:
    every image of a folder, or a manifest's rows of the model's ``species``."""
    if images.endswith(".parquet"):
        df = mf.read(images, validate_kwargs={"disjoint": ()})
        df = df.filter(pl.col("species") == species)
        if df.is_empty():
            raise ValueError(f"{images} has no rows of species {species!r}, the model's species: pass photos of it "
                             "with --images")
        return df.select(c for c in df.columns if c in ("image_id", "image_uri", "masked_uri", "ref_mask_uri",
                                                           "individual", "entity", "seg_status"))
    files = [f for f in rio.list_files(images) if f.lower().endswith(IMAGE_SUFFIXES)]
    if not files:
        raise ValueError(f"{images} holds no images ({', '.join(IMAGE_SUFFIXES)}): pass a folder of photos or a "
                         "manifest (.parquet) with --images")
    root = rio.absolute(images).rstrip("/")
    return pl.DataFrame({"image_id": [f[len(root):].lstrip("/\\") for f in files], "image_uri": files})


def gallery_rows(gallery: str, species: str, masked: bool) -> tuple[pl.DataFrame, str, int]:
    """The gallery manifest's rows of ``species`` with the image column to embed and the rows left out."""
    df = mf.read(gallery, validate_kwargs={"disjoint": ()})
    rows = df.filter(pl.col("species") == species).drop_nulls(IDENTITY_COLUMN)
    if rows.is_empty():
        raise ValueError(f"gallery {gallery} has no labelled rows of species {species!r}, the model's species; "
                         "pass a manifest of known individuals of that species with --gallery")
    if masked and ("masked_uri" not in rows.columns or rows["masked_uri"].null_count() == rows.height):
        raise ValueError(f"the model was trained on masked images but gallery {gallery} has none: segment it first "
                         f"(python workflows/segment.py --manifest {gallery}) and pass the segmented manifest")
    images = select_images(rows, use_masked=masked)
    return images.rows, images.column, images.left_out


def prepare_queries(rows: pl.DataFrame, model: ResolvedModel, out: str, settings: Settings) -> tuple[pl.DataFrame, str]:
    """The query rows with the column to embed (``_uri``) and ``_error`` for rows that cannot be: the
    same background removal as the model's training images (the segmentation pipeline, resumable, run
    on the queries that have no masked image yet)."""
    prep = model.metadata.get("preprocessing") or {}
    if not prep.get("masked"):
        return rows.with_columns(pl.col("image_uri").alias("_uri"), pl.lit(None, pl.String).alias("_error")), "original"
    if "masked_uri" in rows.columns and rows["masked_uri"].null_count() < rows.height:
        return rows.with_columns(pl.col("masked_uri").alias("_uri"),
                                 pl.when(pl.col("masked_uri").is_null()).then(pl.lit("no masked image"))
                                 .otherwise(None).alias("_error")), "masked (given)"
    from reid_core.pipelines.segment import SegmentJob, run
    from reid_core.segmentation.masking import MaskingConfig

    seg = json.loads(prep["segmentation"]) if prep.get("segmentation") else {}
    method = seg.get("method", "sam+isnet")
    queries = rows.with_columns(pl.lit(model.metadata["species"]).alias("species"), pl.lit("test").alias("split"),
                                pl.lit("query").alias("role"), pl.lit("unknown").alias("side"))
    source = rio.join(out, "_queries.parquet")
    mf.write(mf.conform(queries), source)
    job = SegmentJob(manifest=source, output=rio.join(out, "segmented"), method=method,
                     options=seg.get("options", {}), masking=MaskingConfig(**seg.get("masking", {})))
    report = run(job, settings=settings)
    segmented = mf.read(report.manifest_out, validate_kwargs={"disjoint": ()}).select(
        "image_id", "masked_uri", "seg_status", "seg_error")
    joined = rows.drop([c for c in ("masked_uri", "seg_status") if c in rows.columns]).join(
        segmented, on="image_id", how="left", maintain_order="left")
    error = pl.when(pl.col("masked_uri").is_null()).then(
        pl.concat_str(pl.lit("background removal failed: "), pl.col("seg_error").fill_null("no mask"))).otherwise(None)
    return (joined.with_columns(pl.col("masked_uri").alias("_uri"), error.alias("_error")).drop("seg_error"),
            f"masked ({method})")


def match(queries: np.ndarray, gallery: np.ndarray, gallery_individuals: np.ndarray, top_k: int,
          rerank: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per query: the top-k individuals (best gallery image each), their cosine similarities, the index
    of that best image, and the cosine distance to the nearest gallery image (the new-individual score).

    With ``rerank`` the individuals are ordered by k-reciprocal re-ranked distance; the similarities
    shown and the new-individual score stay cosine, the scale the threshold was calibrated on."""
    from reid_core.evaluation.rerank import k_reciprocal_rerank

    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True).clip(1e-12)
    similarity = q @ g.T
    order_by = -k_reciprocal_rerank(q, g, metric="cosine") if rerank else similarity
    names, codes = np.unique(gallery_individuals, return_inverse=True)
    k = min(top_k, len(names))
    rows = np.arange(len(q))
    best_score = np.empty((len(q), len(names)))
    best_image = np.empty((len(q), len(names)), dtype=np.int64)
    for code in range(len(names)):  # each individual's best gallery image
        columns = np.flatnonzero(codes == code)
        best = order_by[:, columns].argmax(axis=1)
        best_image[:, code] = columns[best]
        best_score[:, code] = order_by[rows, columns[best]]
    top = np.argsort(-best_score, axis=1, kind="stable")[:, :k]
    top_images = np.take_along_axis(best_image, top, axis=1)
    top_similarity = np.take_along_axis(similarity, top_images, axis=1)
    return names[top], top_similarity, top_images, 1.0 - similarity.max(axis=1)


def resolve_threshold(job: IdentifyJob, model: ResolvedModel) -> tuple[float, str]:
    if job.threshold is not None:
        return float(job.threshold), "--threshold"
    if THRESHOLD_TAG not in model.tags:
        raise ValueError(f"{model.name} v{model.version} has no calibrated open-set threshold (tag {THRESHOLD_TAG}; "
                         "its validation split had < 2 individuals): pass --threshold, a cosine distance such as 0.3")
    return float(model.tags[THRESHOLD_TAG]), f"calibrated on validation ({model.name} v{model.version})"


def _table(queries: pl.DataFrame, names, similarity, images, distance, threshold: float, model: ResolvedModel,
           gallery: pl.DataFrame, gallery_version: str) -> pl.DataFrame:
    embedded = queries.filter(pl.col("_error").is_null())
    decided = pl.DataFrame({
        "image_id": embedded["image_id"],
        "decision": np.where(distance > threshold, "new", "known"),
        "top1_individual": names[:, 0] if len(names) else [],
        "top1_similarity": similarity[:, 0] if len(names) else [],
        "nearest_distance": distance,
        "topk_individuals": names.tolist(),
        "topk_similarities": similarity.tolist(),
        "topk_gallery_images": [gallery["image_id"].gather(row).to_list() for row in images],
    }, schema_overrides={"topk_individuals": pl.List(pl.String), "topk_similarities": pl.List(pl.Float64),
                         "topk_gallery_images": pl.List(pl.String), "decision": pl.String,
                         "top1_individual": pl.String})
    base = queries.select("image_id", "image_uri", pl.col("_uri").alias("embedded_uri"), pl.col("_error").alias("error"),
                          *[c for c in ("individual",) if c in queries.columns])
    return base.join(decided, on="image_id", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("error").is_null()).then(pl.lit("ok")).otherwise(pl.lit("failed")).alias("status"),
        pl.lit(threshold).alias("threshold"), pl.lit(model.name).alias("model"), pl.lit(model.version).alias("model_version"),
        pl.lit(gallery_version).alias("gallery_version"))


def write_tables(table: pl.DataFrame, out: str) -> None:
    buffer = io.BytesIO()
    table.write_parquet(buffer)
    rio.write_bytes(rio.join(out, "identifications.parquet"), buffer.getvalue())
    flat = table.with_columns(pl.col(c).cast(pl.List(pl.String)).list.join(";")
                              for c in ("topk_individuals", "topk_similarities", "topk_gallery_images"))
    rio.write_bytes(rio.join(out, "identifications.csv"), flat.write_csv().encode())


def write_sheets(table: pl.DataFrame, gallery: pl.DataFrame, out: str, title: str, summary: list[str]) -> None:
    from reid_core.reports.contact_sheet import Tile, render_sheet, write_index

    def picture(uri: str | None):
        try:
            return rio.read_image(uri) if uri else None
        except Exception:
            return None

    by_id = dict(zip(gallery["image_id"].to_list(), gallery["_uri"].to_list(), strict=True))
    entries = []
    for row in table.iter_rows(named=True):
        entry = {"image_id": row["image_id"], "decision": row["decision"], "top1": row["top1_individual"],
                 "score": None if row["top1_similarity"] is None else round(row["top1_similarity"], 3),
                 "error": row["error"]}
        if row["status"] == "ok":
            truth = row.get("individual")
            query = Tile(picture(row["embedded_uri"]), (str(row["image_id"]), f"{row['decision']} "
                         f"(d={row['nearest_distance']:.3f})"), row["decision"])
            matches = [Tile(picture(by_id[image]), (str(name), f"sim {score:.3f}"),
                            "neutral" if truth is None else ("correct" if name == truth else "wrong"))
                       for name, score, image in zip(row["topk_individuals"], row["topk_similarities"],
                                                     row["topk_gallery_images"], strict=True)]
            relative = f"sheets/{gallery_cache_safe(row['image_id'])}.png"
            rio.write_bytes(rio.join(out, *relative.split("/")), rio.encode_image(render_sheet(query, matches)))
            entry["sheet"] = relative
        entries.append(entry)
    write_index(rio.join(out, "index.html"), title, entries, summary)


def gallery_cache_safe(image_id: str) -> str:
    return row_stage.output_name(str(image_id)).replace("/", "__")


def run(job: IdentifyJob, settings: Settings | None = None, *, progress=print) -> IdentifyReport:
    settings = settings or Settings.from_env()
    if job.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {job.top_k}")
    model = resolve_model(job.model, settings)
    threshold, threshold_source = resolve_threshold(job, model)
    out = rio.absolute(job.out) if job.out else str(settings.home / "identify" / f"{model.name}-v{model.version}")
    report = IdentifyReport(model=model.name, version=model.version, out=out, threshold=threshold,
                            threshold_source=threshold_source)
    masked = bool((model.metadata.get("preprocessing") or {}).get("masked"))
    gallery, gallery_column, report.gallery_left_out = gallery_rows(job.gallery, model.metadata["species"], masked)
    queries = query_rows(job.images, model.metadata["species"])
    report.images = queries.height
    if queries["image_id"].is_duplicated().any():
        raise ValueError(f"{job.images} has duplicate image ids {queries.filter(pl.col('image_id').is_duplicated())['image_id'].head(3).to_list()}")

    # The queries: background removal as the model's training images.
    queries, preparation = prepare_queries(queries, model, out, settings)
    report.notes.append(f"queries prepared as the training images: {preparation}")

    # The gallery: once per (model version, gallery data version).
    cache_root = job.cache or str(settings.home / "gallery-cache")
    key = gallery_cache.cache_key(model.uri, gallery, gallery_column, job.flip_tta)
    cached_at = gallery_cache.cache_uri(cache_root, model.name, model.version, key)
    cached = gallery_cache.load(cached_at)
    report.gallery_cache = "miss" if cached is None else "hit"

    # One embedding stage (one actor pool start-up) over queries and, on a cache miss, the gallery; rows
    # embedded by an earlier run with this model are skipped.
    spec = EmbedSpec(model.uri, settings, flip_tta=job.flip_tta, device="cuda" if job.num_gpus > 0 else "cpu")
    work = queries.filter(pl.col("_error").is_null()).select(
        pl.concat_str(pl.lit("q:"), "image_id").alias("image_id"), "_uri")
    if cached is None:
        work = pl.concat([gallery.select(pl.concat_str(pl.lit("g:"), "image_id").alias("image_id"),
                                         pl.col(gallery_column).alias("_uri")), work])
    columns = work.columns
    plan = row_stage.plan(embed_ray.STAGE, work.with_columns(pl.lit(spec.config()).alias(row_stage.CONFIG)),
                          columns, out)
    is_query = pl.col("image_id").str.starts_with("q:")
    report.skipped = plan.rows.filter(is_query & pl.col("_done")).height
    progress(f"gallery: {gallery.height} images of {gallery[IDENTITY_COLUMN].n_unique()} individuals, "
             + (f"cached ({cached_at})" if cached is not None else "to embed"))
    progress(f"images: {queries.height} ({report.skipped} embedded before, "
             f"{plan.todo.filter(is_query).height} to embed)")
    fresh = embed_ray.STAGE.empty()
    if plan.todo.height:
        pool = row_stage.Pool(actors=job.actors, batch_size=job.batch_size, num_cpus=job.num_cpus,
                              num_gpus=job.num_gpus, env=worker_env())
        execution = row_stage.execute(embed_ray.STAGE, plan.todo.select("image_id", "_uri"), embed_ray.Embedder,
                                      spec, pool, journal_dir=rio.join(out, row_stage.JOURNAL_DIR),
                                      settings=settings, verbose=job.verbose, label="embed")
        fresh = execution.records
        report.images_per_s = fresh.height / execution.run_s if execution.run_s > 0 else None
    everything = row_stage.finish(embed_ray.STAGE, plan, fresh).filter(
        pl.col("image_id").is_in(plan.rows["image_id"].implode()))
    embedded = everything.select(pl.col("image_id").str.slice(0, 2).alias("_kind"), pl.col("image_id").str.slice(2),
                                 "embedding", pl.col("embed_error").alias("error"))
    gallery_done = embedded.filter(pl.col("_kind") == "g:").drop("_kind")
    if cached is None:
        cached = gallery.join(gallery_done.drop("error"), on="image_id", how="left").filter(
            pl.col("embedding").is_not_null())
        report.gallery_left_out += gallery.height - cached.height
        gallery_cache.save(cached_at, cached.with_columns(pl.col(IDENTITY_COLUMN).cast(pl.String)))
    cached = cached.join(gallery.select("image_id", pl.col(gallery_column).alias("_uri")), on="image_id", how="left")
    report.gallery_images, report.gallery_individuals = cached.height, cached[IDENTITY_COLUMN].n_unique()

    report.embedded = int(fresh.filter(pl.col("image_id").str.starts_with("q:"))["embedding"].is_not_null().sum())
    embeddings = embedded.filter(pl.col("_kind") == "q:").drop("_kind")
    queries = queries.join(embeddings, on="image_id", how="left", maintain_order="left").with_columns(
        pl.coalesce("_error", "error", pl.when(pl.col("embedding").is_null()).then(pl.lit("not embedded")))
        .alias("_error")).drop("error")

    ok = queries.filter(pl.col("_error").is_null())
    names, similarity, images, distance = match(as_matrix(ok["embedding"]), as_matrix(cached["embedding"]),
                                                cached[IDENTITY_COLUMN].to_numpy(), job.top_k, job.rerank) \
        if ok.height else (np.zeros((0, 0), object), np.zeros((0, 0)), np.zeros((0, 0), np.int64), np.zeros(0))
    table = _table(queries, names, similarity, images, distance, threshold, model, cached, key)
    report.failed = int((table["status"] == "failed").sum())
    report.known = int((table["decision"] == "known").sum())
    report.new = int((table["decision"] == "new").sum())
    report.failures = table.filter(pl.col("status") == "failed").select("image_id", "error").head(5).rows()
    write_tables(table, out)
    summary = [f"model {model.name} v{model.version}; threshold {threshold:.4f} ({threshold_source})",
               f"{report.images} images: {report.known} known, {report.new} new, {report.failed} failed; gallery "
               f"{report.gallery_images} images of {report.gallery_individuals} individuals"]
    if job.sheets:
        write_sheets(table, cached, out, f"Identifications: {Path(job.images).name}", summary)
    report.run_id = _log_run(job, report, out, settings)
    return report


def _log_run(job: IdentifyJob, report: IdentifyReport, out: str, settings: Settings) -> str:
    run_id = tracking.start_run(EXPERIMENT, "identify", f"identify-{report.model}-v{report.version}",
                                tags={"model": report.model, "model_version": report.version},
                                params={"images": job.images, "gallery": job.gallery, "top_k": job.top_k,
                                        "threshold": report.threshold, "threshold_source": report.threshold_source,
                                        "flip_tta": job.flip_tta, "rerank": job.rerank, "out": out},
                                settings=settings)
    tracking.log_metrics(run_id, {k: getattr(report, k) for k in ("images", "embedded", "skipped", "failed", "known",
                                                                  "new", "gallery_images", "gallery_individuals")}
                         | ({"images_per_s": report.images_per_s} if report.images_per_s else {}), settings=settings)
    if not rio.is_s3(out):  # the tables and the page; the sheets stay in ``out``
        client = tracking.configure(settings)
        for name in ("identifications.parquet", "identifications.csv", "index.html"):
            if Path(out, name).exists():
                client.log_artifact(run_id, str(Path(out, name)), artifact_path="identify")
    tracking.end_run(run_id, settings=settings)
    return run_id
