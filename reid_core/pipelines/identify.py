"""Identify the animals in new photos with a registered model: which known individual is each, and
which are individuals never seen before.

    images (DIR | MANIFEST | s3://prefix) --[background removal as the model was trained]--> embeddings
    gallery MANIFEST (known individuals) -----------------------------[cached per model x data]--> embeddings
    per image: its ``shortlist`` most similar gallery images by the global model, a local matcher's
    verified matches with each (``pipelines.match``, features of the gallery cached), both scores mapped
    to P(same individual) and averaged (the model version's calibration, fitted on validation at
    publishing); the top-k known individuals by that fused probability, and "new" when the best one's
    probability is at most the operating point for a gallery of this many individuals (``threshold``
    overrides it). The photos called new are grouped into proposed individuals new-1, new-2, ...

Outputs under ``out``: ``identifications.parquet`` / ``.csv``, ``sheets/<image>.png`` (with the match lines),
``sheets/groups/new-<k>.png`` and ``index.html``.
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
from reid_core.evaluation.calibration import OpenSetCalibration, fuse, rank_individuals, shortlist
from reid_core.evaluation.grouping import group_names, group_photos
from reid_core.lifecycle import gallery_cache, open_set_calibration
from reid_core.lifecycle.open_set_calibration import IDENTITY_COLUMN
from reid_core.pipelines import embed_ray, row_stage
from reid_core.pipelines.embed_ray import EmbedSpec, as_matrix
from reid_core.pipelines.match import gallery_features_folder, match_pairs
from reid_core.pipelines.ray_runtime import worker_env
from reid_core.settings import Settings

EXPERIMENT = "reid-identify"
FIGURES_LOGGED = 20  # photo sheets logged to the MLflow run (all of them stay in ``out``)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# The columns a detector's crop rows carry (pipelines.detect): kept on the identifications.
DETECTION_COLUMNS = ("photo_id", "box_x0", "box_y0", "box_x1", "box_y1", "crop_left", "crop_top", "det_score")


@dataclass(frozen=True)
class IdentifyJob:
    model: str  # reid-dve-tiger@production, reid-dve-tiger/3 or models:/reid-dve-tiger@production
    images: str  # a folder (local or s3://) of images, or a manifest (.parquet)
    gallery: str  # a manifest of the known individuals (its rows of the model's species)
    out: str | None = None  # default: REID_HOME/identify/<model name>-v<version>
    top_k: int = 5
    threshold: float | None = None  # fused probability; None: the calibrated operating point for the gallery's size
    matcher: str = "sift"  # none | sift | lightglue-disk | lightglue-aliked
    shortlist: int = 50  # gallery images per photo matched locally
    group_new: bool = True  # group the photos called new into proposed individuals
    flip_tta: bool = False
    rerank: bool = False
    actors: int = 1
    batch_size: int = 32
    num_cpus: float = 1.0
    num_gpus: float = 0.0  # per actor; fractions share a GPU
    cache: str | None = None  # gallery cache root; default REID_HOME/gallery-cache
    sheets: bool = True
    verbose: bool = False  # Ray's and Ray Data's own progress output
    # Whole photos: detect first (``reid detect``'s stage), then identify every animal's crop.
    detector: str | None = None  # a registered detector (megadetector, reference); None: one animal per image
    detector_options: dict = field(default_factory=dict)
    detect_threshold: float = 0.2
    detect_margin: float = 0.1


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
    groups: int = 0  # proposed new individuals
    matcher: str = "none"
    pairs_matched: int = 0
    pair_failures: int = 0
    gallery_images: int = 0
    gallery_individuals: int = 0
    gallery_cache: str = ""  # hit / miss
    gallery_left_out: int = 0
    images_per_s: float | None = None
    photos: int = 0  # whole photos given (with a detector)
    photos_empty: int = 0  # no animal above the detector's threshold
    photos_failed: int = 0
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
    run_id: str = ""


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
    return ResolvedModel(name, str(found.version), uri, metadata, dict(found.tags),
                         str(found.tags.get("run_id") or found.run_id or ""))


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
                                                           "individual", "entity", "seg_status", *DETECTION_COLUMNS))
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


@dataclass
class Scored:
    """Per query x gallery image: the global similarity, the fused probability (NaN: not shortlisted, so not
    compared locally) and the score that orders the shortlist and breaks ties between equal probabilities
    (the similarity, or k-reciprocal re-ranked with ``rerank``); the verified matches per scored pair."""

    similarity: np.ndarray
    fused: np.ndarray
    order: np.ndarray
    keypoints: dict = field(default_factory=dict)  # (query_id, gallery_id) -> (kp query, kp gallery)
    counts: dict = field(default_factory=dict)  # (query_id, gallery_id) -> verified matches
    pairs: int = 0
    failures: int = 0


def load_calibration(job: IdentifyJob, model: ResolvedModel, settings: Settings) -> OpenSetCalibration:
    calibration = open_set_calibration.load(model.run_id, model.tags, settings)
    if calibration is None:
        raise ValueError(f"{model.name} v{model.version} has no identification calibration (tag "
                         f"{open_set_calibration.CALIBRATION_TAG}): it was published before calibration was stored, "
                         "or its validation split had < 2 individuals; publish it again")
    try:
        calibration.fusion(job.matcher)
    except KeyError as error:
        raise ValueError(f"{model.name} v{model.version}: {error.args[0]}; pass one of those with --matcher") from None
    return calibration


def decision_threshold(job: IdentifyJob, model: ResolvedModel, calibration: OpenSetCalibration,
                       individuals: int) -> tuple[float, str]:
    if job.threshold is not None:
        return float(job.threshold), "--threshold"
    point = calibration.fusion(job.matcher).operating_point(individuals)
    return point, (f"operating point for {individuals} individuals, matcher {job.matcher} "
                   f"(calibrated on validation, {model.name} v{model.version})")


def local_matches(pairs: pl.DataFrame, job: IdentifyJob, out: str, features: tuple[str, str],
                  settings: Settings, options: dict | None = None) -> pl.DataFrame:
    """``pipelines.match`` over (query_id, gallery_id, query_uri, gallery_uri) pairs (resumable under ``out``);
    ``features``: the folders of the queries' and the gallery's local features; ``options``: the matcher's,
    as it was calibrated."""
    return match_pairs(pairs, job.matcher, out=out, options=options, actors=job.actors, num_gpus=job.num_gpus,
                       features_cache=features[0], gallery_features_cache=features[1], settings=settings)


def score_pairs(similarity: np.ndarray, order: np.ndarray, query_ids: list[str], query_uris: list[str],
                gallery_ids: list[str], gallery_uris: list[str], calibration: OpenSetCalibration, job: IdentifyJob,
                out: str, features: tuple[str, str], settings: Settings, *, skip_self: bool = False) -> Scored:
    """The fused probabilities of each query's ``job.shortlist`` best gallery images by ``order`` (every
    pair with ``matcher`` none: the global model alone needs no shortlist)."""
    global_p = calibration.probability(open_set_calibration.GLOBAL, similarity)
    if job.matcher == "none" or not len(query_ids) or not len(gallery_ids):
        return Scored(similarity, global_p, order)
    masked = order.astype(np.float64, copy=True)
    if skip_self:  # grouping: a photo against the other photos
        np.fill_diagonal(masked, -np.inf)
    top = shortlist(masked, min(job.shortlist, len(gallery_ids) - int(skip_self)))
    qi = np.repeat(np.arange(len(query_ids)), top.shape[1])
    gi = top.reshape(-1)
    if skip_self:  # each unordered pair once
        keep = qi != gi
        qi, gi = np.minimum(qi, gi)[keep], np.maximum(qi, gi)[keep]
        unique = np.unique(np.stack([qi, gi], 1), axis=0)
        qi, gi = unique[:, 0], unique[:, 1]
    if not len(qi):  # one photo against itself only
        return Scored(similarity, global_p, order)
    pairs = pl.DataFrame({"query_id": [query_ids[i] for i in qi], "gallery_id": [gallery_ids[j] for j in gi],
                          "query_uri": [query_uris[i] for i in qi], "gallery_uri": [gallery_uris[j] for j in gi]},
                         schema=dict.fromkeys(("query_id", "gallery_id", "query_uri", "gallery_uri"), pl.String))
    result = local_matches(pairs, job, out, features, settings,
                           open_set_calibration.matcher_options(calibration, job.matcher))
    result = pairs.select("query_id", "gallery_id").join(result, on=["query_id", "gallery_id"], how="left",
                                                         maintain_order="left")
    raw = result["score"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    local_p = np.where(np.isfinite(raw), calibration.probability(job.matcher, np.nan_to_num(raw)), np.nan)
    fused = np.full(similarity.shape, np.nan)
    fused[qi, gi] = fuse([global_p[qi, gi], local_p])  # a failed pair: the global model's probability alone
    if skip_self:
        fused[gi, qi] = fused[qi, gi]
    scored = Scored(similarity, fused, order, pairs=len(qi), failures=int((~np.isfinite(raw)).sum()))
    for row in result.iter_rows(named=True):
        key = (row["query_id"], row["gallery_id"])
        scored.counts[key] = row["matches"]
        scored.keypoints[key] = (np.asarray(row["kp_query"] or [], np.float32).reshape(-1, 2),
                                 np.asarray(row["kp_gallery"] or [], np.float32).reshape(-1, 2))
    return scored


def global_order(queries: np.ndarray, gallery: np.ndarray, rerank: bool) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and the score that orders the shortlist (k-reciprocal re-ranked with ``rerank``)."""
    from reid_core.evaluation.rerank import k_reciprocal_rerank

    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True).clip(1e-12)
    similarity = q @ g.T
    return similarity, (-k_reciprocal_rerank(q, g, metric="cosine") if rerank else similarity)


def _table(queries: pl.DataFrame, scored: Scored, top_k: int, threshold: float, model: ResolvedModel,
           gallery: pl.DataFrame, gallery_version: str) -> pl.DataFrame:
    embedded = queries.filter(pl.col("_error").is_null())
    names, codes = np.unique(gallery[IDENTITY_COLUMN].to_numpy(), return_inverse=True)
    if embedded.height:
        top, probability, images = rank_individuals(scored.fused, scored.order, codes, len(names), top_k)
    else:
        top, probability, images = (np.zeros((0, 0), np.int64), np.zeros((0, 0)), np.zeros((0, 0), np.int64))
    similarity = np.take_along_axis(scored.similarity, images, axis=1) if embedded.height else np.zeros((0, 0))
    gallery_ids = gallery["image_id"].to_list()
    image_ids = [[gallery_ids[j] for j in row] for row in images.tolist()]
    counts = [[scored.counts.get((q, g)) for g in row] for q, row in zip(embedded["image_id"], image_ids, strict=True)]
    best = probability[:, 0] if probability.size else np.zeros(embedded.height)
    decided = pl.DataFrame({
        "image_id": embedded["image_id"],
        "decision": np.where(best > threshold, "known", "new"),
        "top1_individual": names[top[:, 0]] if top.size else [],
        "top1_probability": best,
        "top1_similarity": similarity[:, 0] if similarity.size else [],
        "nearest_distance": 1.0 - scored.similarity.max(axis=1) if embedded.height else [],
        "topk_individuals": names[top].tolist(),
        "topk_probabilities": probability.tolist(),
        "topk_similarities": similarity.tolist(),
        "topk_matches": counts,
        "topk_gallery_images": image_ids,
    }, schema_overrides={"topk_individuals": pl.List(pl.String), "topk_similarities": pl.List(pl.Float64),
                         "topk_probabilities": pl.List(pl.Float64), "topk_matches": pl.List(pl.Int64),
                         "topk_gallery_images": pl.List(pl.String), "decision": pl.String,
                         "top1_individual": pl.String, "top1_probability": pl.Float64, "top1_similarity": pl.Float64,
                         "nearest_distance": pl.Float64})
    base = queries.select("image_id", "image_uri", pl.col("_uri").alias("embedded_uri"), pl.col("_error").alias("error"),
                          *[c for c in ("individual", *DETECTION_COLUMNS) if c in queries.columns])
    return base.join(decided, on="image_id", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("error").is_null()).then(pl.lit("ok")).otherwise(pl.lit("failed")).alias("status"),
        pl.lit(threshold).alias("threshold"), pl.lit(model.name).alias("model"), pl.lit(model.version).alias("model_version"),
        pl.lit(gallery_version).alias("gallery_version"))


def group_new(table: pl.DataFrame, embeddings: dict[str, np.ndarray], calibration: OpenSetCalibration,
              job: IdentifyJob, out: str, features: str, settings: Settings) -> tuple[pl.DataFrame, Scored | None]:
    """The photos called new grouped into proposed individuals (column ``group``: new-1, new-2, ... by size),
    on their fused pairwise probabilities, joined while above the pair-level operating point."""
    new = table.filter(pl.col("decision") == "new")
    if not job.group_new or new.is_empty():
        return table.with_columns(pl.lit(None, pl.String).alias("group")), None
    ids, uris = new["image_id"].to_list(), new["embedded_uri"].to_list()
    vectors = np.stack([embeddings[i] for i in ids])
    similarity, order = global_order(vectors, vectors, rerank=False)
    scored = score_pairs(similarity, order, ids, uris, ids, uris, calibration, job, rio.join(out, "matches-new"),
                         (features, features), settings, skip_self=True)
    groups = group_photos(scored.fused, calibration.fusion(job.matcher).operating_point(1))
    named = pl.DataFrame({"image_id": ids, "group": group_names(groups)})
    return table.join(named, on="image_id", how="left", maintain_order="left"), scored


def write_tables(table: pl.DataFrame, out: str) -> None:
    buffer = io.BytesIO()
    table.write_parquet(buffer)
    rio.write_bytes(rio.join(out, "identifications.parquet"), buffer.getvalue())
    listed = ("topk_individuals", "topk_similarities", "topk_probabilities", "topk_matches", "topk_gallery_images")
    flat = table.with_columns(pl.col(c).cast(pl.List(pl.String)).list.join(";") for c in listed)
    rio.write_bytes(rio.join(out, "identifications.csv"), flat.write_csv().encode())


def _picture(uri: str | None):
    try:
        return rio.read_image(uri) if uri else None
    except Exception:
        return None


def write_sheets(table: pl.DataFrame, gallery: pl.DataFrame, scored: Scored, out: str, title: str,
                 summary: list[str], photos: list[dict] = ()) -> list[str]:
    """A sheet per identified photo (pairs with the verified match lines when matched locally), a sheet per
    proposed new individual and the index page; returns the sheets' paths relative to ``out``."""
    from reid_core.reports.contact_sheet import PairTile, Tile, render_group, render_sheet, write_index

    by_id = dict(zip(gallery["image_id"].to_list(), gallery["_uri"].to_list(), strict=True))
    entries, written = [], []
    for row in table.iter_rows(named=True):
        entry = {"image_id": row["image_id"], "decision": row["decision"], "top1": row["top1_individual"],
                 "score": None if row["top1_probability"] is None else round(row["top1_probability"], 3),
                 "error": row["error"]}
        if row["status"] == "ok":
            truth = row.get("individual")
            query_picture = _picture(row["embedded_uri"])
            query = Tile(query_picture, (str(row["image_id"]), f"{row['decision']} (p={row['top1_probability']:.3f})"
                                         + (f" {row['group']}" if row.get("group") else "")), row["decision"])
            matches = []
            for name, p, sim, count, image in zip(row["topk_individuals"], row["topk_probabilities"],
                                                  row["topk_similarities"], row["topk_matches"],
                                                  row["topk_gallery_images"], strict=True):
                frame = "neutral" if truth is None else ("correct" if name == truth else "wrong")
                caption = (str(name), f"p {p:.3f} (cos {sim:.2f}" + (f", {count} matches)" if count is not None else ")"))
                points = scored.keypoints.get((row["image_id"], image))
                matches.append(Tile(_picture(by_id[image]), caption, frame) if points is None else
                               PairTile(query_picture, _picture(by_id[image]), points[0], points[1], caption, frame))
            relative = f"sheets/{gallery_cache_safe(row['image_id'])}.png"
            rio.write_bytes(rio.join(out, *relative.split("/")), rio.encode_image(render_sheet(query, matches)))
            entry["sheet"] = relative
            written.append(relative)
        entries.append(entry)
    groups = []
    if "group" in table.columns:
        for name, members in table.filter(pl.col("group").is_not_null()).group_by("group", maintain_order=True):
            label = str(name[0])
            tiles = [Tile(_picture(uri), (str(image_id),), "new")
                     for image_id, uri in zip(members["image_id"], members["embedded_uri"], strict=True)]
            relative = f"sheets/groups/{label}.png"
            rio.write_bytes(rio.join(out, "sheets", "groups", f"{label}.png"), rio.encode_image(render_group(tiles)))
            groups.append({"name": label, "photos": members.height, "sheet": relative})
            written.append(relative)
        groups.sort(key=lambda g: int(g["name"].split("-")[-1]))
    write_index(rio.join(out, "index.html"), title, entries, summary, groups, photos)
    return written + [p["sheet"] for p in photos if p.get("sheet")]


def gallery_cache_safe(image_id: str) -> str:
    return row_stage.output_name(str(image_id)).replace("/", "__")


def detect_photos(job: IdentifyJob, species: str, out: str, settings: Settings) -> tuple[str, pl.DataFrame, Any]:
    """Whole photos -> one query per animal: the detection stage (resumable under ``out/detected``) over
    the photos (a folder or a manifest's rows of ``species``); (the crops' manifest, the photos, the report)."""
    from reid_core.pipelines.detect import DetectJob
    from reid_core.pipelines.detect import run as detect

    if job.images.endswith(".parquet"):
        photos = mf.read(job.images, validate_kwargs={"disjoint": ()}).filter(pl.col("species") == species)
        if photos.is_empty():
            raise ValueError(f"{job.images} has no rows of species {species!r}, the model's species: pass photos of "
                             "it with --images")
    else:
        photos = query_rows(job.images, species).with_columns(  # photos of unknown animals: queries
            pl.lit(species).alias("species"), pl.lit("test").alias("split"), pl.lit("query").alias("role"),
            pl.lit("unknown").alias("side"), pl.lit(None, pl.String).alias("individual"),
            pl.lit(None, pl.String).alias("entity"))
    source = rio.join(out, "_photos.parquet")
    mf.write(mf.conform(photos), source)
    report = detect(DetectJob(manifest=source, output=rio.join(out, "detected"), method=job.detector,
                              options=job.detector_options, threshold=job.detect_threshold, margin=job.detect_margin,
                              actors=job.actors, num_gpus=job.num_gpus, num_cpus=job.num_cpus),
                    settings=settings, verbose=job.verbose)
    if not report.animals:
        raise ValueError(f"{job.detector} found no animal above --detect-threshold {job.detect_threshold} in the "
                         f"{report.rows} photos of {job.images} ({report.empty} empty, {report.failed} failed)")
    return report.manifest_out, pl.read_parquet(io.BytesIO(rio.read_bytes(report.photos_manifest))), report


def write_photo_sheets(table: pl.DataFrame, photos: pl.DataFrame, out: str) -> list[dict]:
    """One picture per whole photo: each animal's box labelled with its individual, or its proposed new
    individual (new-N); empty and failed photos listed without a picture. Returns the index's rows."""
    from reid_core.reports.contact_sheet import render_photo

    animals = table.filter(pl.col("photo_id").is_not_null())
    entries = []
    for photo in photos.iter_rows(named=True):
        mine = animals.filter(pl.col("photo_id") == photo["image_id"])
        entry = {"name": photo["image_id"], "animals": mine.height, "status": photo.get("det_status")}
        picture = _picture(photo["image_uri"]) if mine.height else None
        if picture is not None:
            boxes = []
            for row in mine.iter_rows(named=True):
                known = row["decision"] == "known"
                label = (row["top1_individual"] if known else row.get("group") or "new") if row["status"] == "ok" \
                    else "failed"
                score = f" {row['top1_probability']:.2f}" if row["status"] == "ok" and known else ""
                boxes.append(((row["box_x0"], row["box_y0"], row["box_x1"], row["box_y1"]), f"{label}{score}",
                              row["decision"] if row["status"] == "ok" else "failed"))
            relative = f"sheets/photos/{gallery_cache_safe(photo['image_id'])}.png"
            rio.write_bytes(rio.join(out, *relative.split("/")), rio.encode_image(render_photo(picture, boxes)))
            entry["sheet"] = relative
        entries.append(entry)
    return entries


def run(job: IdentifyJob, settings: Settings | None = None, *, progress=print) -> IdentifyReport:
    settings = settings or Settings.from_env()
    if job.top_k < 1 or job.shortlist < 1:
        raise ValueError(f"--top-k and --shortlist must be >= 1, got {job.top_k} and {job.shortlist}")
    model = resolve_model(job.model, settings)
    calibration = load_calibration(job, model, settings)
    out = rio.absolute(job.out) if job.out else str(settings.home / "identify" / f"{model.name}-v{model.version}")
    report = IdentifyReport(model=model.name, version=model.version, out=out, threshold=float("nan"),
                            threshold_source="", matcher=job.matcher)
    masked = bool((model.metadata.get("preprocessing") or {}).get("masked"))
    gallery, gallery_column, report.gallery_left_out = gallery_rows(job.gallery, model.metadata["species"], masked)
    images, photos = job.images, None
    if job.detector:
        images, photos, detected = detect_photos(job, model.metadata["species"], out, settings)
        report.photos, report.photos_empty, report.photos_failed = detected.rows, detected.empty, detected.failed
        progress(f"photos: {detected.rows}, {detected.animals} animals found by {job.detector}, {detected.empty} "
                 f"empty, {detected.failed} failed")
    queries = query_rows(images, model.metadata["species"])
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

    # Global shortlist, local matches, calibrated fusion; known / new at the gallery size's operating point.
    ok = queries.filter(pl.col("_error").is_null())
    features = (rio.join(out, "features"), gallery_features_folder(cached_at))  # the gallery's beside its embeddings
    vectors = as_matrix(ok["embedding"]) if ok.height else np.zeros((0, 0), np.float32)
    if ok.height:
        similarity, order = global_order(vectors, as_matrix(cached["embedding"]), job.rerank)
        progress(f"scoring: global model + {job.matcher} on each photo's {job.shortlist} most similar gallery images")
        scored = score_pairs(similarity, order, ok["image_id"].to_list(), ok["_uri"].to_list(),
                             cached["image_id"].to_list(), cached["_uri"].to_list(), calibration, job,
                             rio.join(out, "matches"), features, settings)
    else:
        scored = Scored(*(np.zeros((0, cached.height)),) * 3)
    report.pairs_matched, report.pair_failures = scored.pairs, scored.failures
    threshold, report.threshold_source = decision_threshold(job, model, calibration, report.gallery_individuals)
    report.threshold = threshold
    table = _table(queries, scored, job.top_k, threshold, model, cached, key)
    table, _ = group_new(table, dict(zip(ok["image_id"].to_list(), vectors, strict=True)), calibration, job, out,
                         features[0], settings)
    report.groups = table["group"].drop_nulls().n_unique()
    report.failed = int((table["status"] == "failed").sum())
    report.known = int((table["decision"] == "known").sum())
    report.new = int((table["decision"] == "new").sum())
    report.failures = table.filter(pl.col("status") == "failed").select("image_id", "error").head(5).rows()
    write_tables(table, out)
    summary = [f"model {model.name} v{model.version}; matcher {job.matcher}, shortlist {job.shortlist}; known when the "
               f"fused probability of the best individual > {threshold:.4f} ({report.threshold_source})",
               f"{report.images} images: {report.known} known, {report.new} new in {report.groups} proposed "
               f"individuals, {report.failed} failed; gallery {report.gallery_images} images of "
               f"{report.gallery_individuals} individuals"]
    if photos is not None:
        summary.append(f"{report.photos} whole photos, detector {job.detector}: {report.images} animals, "
                       f"{report.photos_empty} photos empty, {report.photos_failed} failed")
    photo_entries = write_photo_sheets(table, photos, out) if photos is not None and job.sheets else []
    sheets = write_sheets(table, cached, scored, out, f"Identifications: {Path(job.images).name}", summary,
                          photo_entries) if job.sheets else []
    report.run_id = _log_run(job, report, out, sheets, settings)
    return report


def _log_run(job: IdentifyJob, report: IdentifyReport, out: str, sheets: list[str], settings: Settings) -> str:
    run_id = tracking.start_run(EXPERIMENT, "identify", f"identify-{report.model}-v{report.version}",
                                tags={"model": report.model, "model_version": report.version},
                                params={"images": job.images, "gallery": job.gallery, "top_k": job.top_k,
                                        "matcher": job.matcher, "shortlist": job.shortlist, "group_new": job.group_new,
                                        "threshold": report.threshold, "threshold_source": report.threshold_source,
                                        "flip_tta": job.flip_tta, "rerank": job.rerank, "out": out,
                                        "detector": job.detector},
                                settings=settings)
    tracking.log_metrics(run_id, {k: getattr(report, k) for k in ("images", "embedded", "skipped", "failed", "known",
                                                                  "new", "groups", "pairs_matched", "pair_failures",
                                                                  "gallery_images", "gallery_individuals",
                                                                  "photos", "photos_empty", "photos_failed")}
                         | ({"images_per_s": report.images_per_s} if report.images_per_s else {}), settings=settings)
    if not rio.is_s3(out):  # the tables, the page and the figures: every group's sheet, the first photos' sheets
        client = tracking.configure(settings)
        for name in ("identifications.parquet", "identifications.csv", "index.html"):
            if Path(out, name).exists():
                client.log_artifact(run_id, str(Path(out, name)), artifact_path="identify")
        figures = [s for s in sheets if s.startswith("sheets/groups/")] + \
            [s for s in sheets if not s.startswith("sheets/groups/")][:FIGURES_LOGGED]
        for relative in figures:
            client.log_artifact(run_id, str(Path(out, relative)), artifact_path=f"identify/{Path(relative).parent}")
    tracking.end_run(run_id, settings=settings)
    return run_id
