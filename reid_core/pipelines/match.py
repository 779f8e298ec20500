"""Local-feature matching of (query image, gallery image) pairs as a row stage (``row_stage``): an actor
pool (one matcher per actor, fractional GPUs allowed), batches, per-row results, reruns that skip
finished pairs.

Input rows: ``query_id``, ``gallery_id``, ``query_uri``, ``gallery_uri`` (the masked, cropped images the
global model used). Per pair: the score, the number of verified matches and their keypoints (list
columns, for drawing lines), with a status:

- ``ok``; ``no_keypoints`` (an image without keypoints, e.g. a blank mask: score 0);
- ``unreadable`` (an image that is no decodable image: score null, kept as the pair's result);
- ``failed`` (an image that could not be read, or an error in the matcher: score null, retried by a rerun).

Each image's features are extracted once and kept (``matching.store``): query features under
``features_cache`` (default ``<out>/features``), gallery features under ``gallery_features_cache`` where
given (beside the gallery embeddings cache, keyed the same way: see ``gallery_features_folder``), each
in a folder per matcher + options. A pair is done when its record has a done status, was made by the same
matcher and options, and on the same two image URIs. Pairs are sorted by query so a batch reuses them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from reid_core.data import files as rio
from reid_core.matching import registry, store
from reid_core.pipelines import row_stage
from reid_core.pipelines.row_stage import CONFIG

PAIR_COLUMNS = ("query_id", "gallery_id", "query_uri", "gallery_uri")
OUTPUT_COLUMNS = ("query_id", "gallery_id", "score", "matches", "status", "error", "kp_query", "kp_gallery")
POINTS = pa.list_(pa.list_(pa.float32()))
RESULT_SCHEMA = pa.schema([
    ("image_id", pa.string()),  # the pair's key (the template's row id): JSON [query_id, gallery_id]
    ("query_id", pa.string()),
    ("gallery_id", pa.string()),
    ("query_uri", pa.string()),
    ("gallery_uri", pa.string()),
    ("score", pa.float64()),
    ("matches", pa.int64()),
    ("kp_query", POINTS),
    ("kp_gallery", POINTS),
    ("match_status", pa.string()),
    ("match_error", pa.string()),
    ("match_config", pa.string()),
    ("match_time", pa.float64()),
])
DONE_STATUSES = ("ok", "no_keypoints", store.UNREADABLE)
STAGE = row_stage.Stage(
    name="match", schema=RESULT_SCHEMA, status="match_status", error="match_error", config="match_config",
    time="match_time", done_statuses=DONE_STATUSES,
    targets={"query_uri": "_query_uri", "gallery_uri": "_gallery_uri"}, redo_other_config=True)


def config_of(matcher: str, options: dict | None) -> str:
    """What makes two pairs' scores comparable (the device is not part of it)."""
    return json.dumps({"matcher": matcher, "options": options or {}}, sort_keys=True, default=str)


def gallery_features_folder(gallery_cache_uri: str) -> str:
    """The folder of a gallery's local features beside its cached embeddings (``lifecycle.gallery_cache``:
    ``.../gallery-<key>.parquet`` -> ``.../gallery-<key>-features``), so both share the gallery's key."""
    return gallery_cache_uri.removesuffix(".parquet") + "-features"


@dataclass(frozen=True)
class MatchSpec:
    matcher: str
    options: dict
    device: str
    features_cache: str | None  # root of the query features (None: not kept on disk)
    gallery_features_cache: str | None  # root of the gallery features (None: with the query features)

    def config(self) -> str:
        return config_of(self.matcher, self.options)

    def folders(self) -> tuple[str | None, str | None]:
        key = store.options_key(self.matcher, self.options)
        query = rio.join(self.features_cache, key) if self.features_cache else None
        gallery = rio.join(self.gallery_features_cache, key) if self.gallery_features_cache else query
        return query, gallery


def pair_key(query_id: str, gallery_id: str) -> str:
    return json.dumps([str(query_id), str(gallery_id)])


def _points(array) -> list:
    return array.astype("float32").tolist()


class MatchWorker:
    """One per actor (or the in-process loop): the matcher is built here, next to the GPU.
    Rows: image_id, query_id, gallery_id, _query_uri, _gallery_uri."""

    def __init__(self, spec: MatchSpec) -> None:
        self.spec = spec
        self.store = store.FeatureStore(registry.get_matcher(spec.matcher, spec.options, spec.device))
        self.query_folder, self.gallery_folder = spec.folders()

    def _pair(self, row: dict) -> dict:
        record = {"image_id": row["image_id"], "query_id": row["query_id"], "gallery_id": row["gallery_id"],
                  "query_uri": row["_query_uri"], "gallery_uri": row["_gallery_uri"], "score": None, "matches": 0,
                  "kp_query": [], "kp_gallery": [], "match_status": "failed", "match_error": None,
                  "match_config": self.spec.config()}
        try:
            query = self.store.get(row["_query_uri"], self.query_folder)
            gallery = self.store.get(row["_gallery_uri"], self.gallery_folder)
            bad = [(side, o) for side, o in (("query", query), ("gallery", gallery)) if o.status]
            if bad:  # failed (retried) wins over unreadable (kept)
                side, outcome = min(bad, key=lambda b: b[1].status != store.FAILED)
                record.update(match_status=outcome.status, match_error=f"{side} image: {outcome.error}")
                return record
            if len(query.features) == 0 or len(gallery.features) == 0:
                empty = [side for side, o in (("query", query), ("gallery", gallery)) if len(o.features) == 0]
                record.update(score=0.0, match_status="no_keypoints",
                              match_error=f"no keypoints in the {' and '.join(empty)} image")
                return record
            match = self.store.matcher.match(query.features, gallery.features)
            record.update(score=float(match.score), matches=match.matches, kp_query=_points(match.keypoints_a),
                          kp_gallery=_points(match.keypoints_b), match_status="ok")
        except Exception as error:  # this pair fails, the batch goes on
            record.update(score=None, matches=0, kp_query=[], kp_gallery=[], match_status="failed",
                          match_error=f"{type(error).__name__}: {error}")
        return record

    def __call__(self, rows: list[dict]) -> list[dict]:
        return [self._pair(row) for row in rows]


# --------------------------------------------------------------------------------------------------
# Rows in, results out


def work_rows(pairs: pl.DataFrame, config: str) -> pl.DataFrame:
    """The template's rows: one per distinct pair, sorted by query (its features stay warm in a batch)."""
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs lack columns {missing}: they need {', '.join(PAIR_COLUMNS)}")
    rows = pairs.select(pl.col("query_id").cast(pl.String), pl.col("gallery_id").cast(pl.String),
                        pl.col("query_uri").alias("_query_uri"), pl.col("gallery_uri").alias("_gallery_uri"))
    rows = rows.unique(["query_id", "gallery_id"], keep="first", maintain_order=True)
    key = pl.Series("image_id", [pair_key(q, g) for q, g in rows.select("query_id", "gallery_id").iter_rows()],
                    pl.String)
    return rows.with_columns(key, pl.lit(config).alias(CONFIG)).sort("_query_uri", maintain_order=True)


def as_output(pairs: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """OUTPUT_COLUMNS in the order of ``pairs``, joined on the pair key (a batch that raised has records
    with the key only; a pair without a record has status null)."""
    records = records.select("image_id", "score", "matches", pl.col("match_status").alias("status"),
                             pl.col("match_error").alias("error"), "kp_query", "kp_gallery")
    keys = pairs.select(pl.col("query_id").cast(pl.String), pl.col("gallery_id").cast(pl.String))
    keys = keys.with_columns(pl.Series("image_id", [pair_key(q, g) for q, g in keys.iter_rows()], pl.String))
    return keys.join(records, on="image_id", how="left", maintain_order="left").select(OUTPUT_COLUMNS)


def _spec(matcher: str, options: dict | None, device: str, features_cache: str | None,
          gallery_features_cache: str | None) -> MatchSpec:
    registry.check_options(matcher, options)
    return MatchSpec(matcher, dict(options or {}), device,
                     rio.absolute(features_cache) if features_cache else None,
                     rio.absolute(gallery_features_cache) if gallery_features_cache else None)


def match_pairs_local(pairs: pl.DataFrame, matcher: str, *, options: dict | None = None, device: str = "cpu",
                      features_cache: str | None = None, gallery_features_cache: str | None = None) -> pl.DataFrame:
    """The same results in this process, without Ray or a journal (the evaluation library, the benchmark's
    loop); features are kept under the caches where given."""
    spec = _spec(matcher, options, device, features_cache, gallery_features_cache)
    rows = work_rows(pairs, spec.config())
    records = MatchWorker(spec)(rows.to_dicts()) if rows.height else []
    table = pa.Table.from_pylist([{**r, "match_time": 0.0} for r in records], schema=RESULT_SCHEMA)
    return as_output(pairs, pl.from_arrow(table))


@dataclass
class MatchRun:
    results: pl.DataFrame  # OUTPUT_COLUMNS, one row per input pair, in its order
    report: row_stage.StageReport


def run_match_stage(pairs: pl.DataFrame, matcher: str, *, out: str, options: dict | None = None, actors: int = 1,
                    batch_size: int = 64, num_gpus: float = 0.0, num_cpus: float = 1.0,
                    features_cache: str | None = None, gallery_features_cache: str | None = None, settings=None,
                    verbose: bool = False) -> MatchRun:
    """``match_pairs`` with the stage's report (pairs skipped, processed, statuses, speed)."""
    out = rio.absolute(out).rstrip("/")
    device = "cuda" if num_gpus > 0 else "cpu"
    spec = _spec(matcher, options, device, features_cache or rio.join(out, "features"), gallery_features_cache)
    rows = work_rows(pairs, spec.config())
    plan = row_stage.plan(STAGE, rows, rows.columns, out)
    report = row_stage.StageReport.of(plan)
    fresh, execution = STAGE.empty(), None
    if plan.todo.height:
        pool = row_stage.Pool(actors=actors, batch_size=batch_size, num_cpus=num_cpus, num_gpus=num_gpus)
        work = plan.todo.select("image_id", "query_id", "gallery_id", "_query_uri", "_gallery_uri", CONFIG)
        journal = rio.join(out, row_stage.JOURNAL_DIR)
        execution = row_stage.execute(STAGE, work, MatchWorker, spec, pool, journal_dir=journal, settings=settings,
                                      verbose=verbose, label="match")
        fresh = execution.records
    report.add_run(STAGE, fresh, execution)
    records = row_stage.finish(STAGE, plan, fresh)
    return MatchRun(as_output(pairs, records), report)


def match_pairs(pairs: pl.DataFrame, matcher: str, *, out: str, options: dict | None = None, actors: int = 1,
                batch_size: int = 64, num_gpus: float = 0.0, features_cache: str | None = None,
                gallery_features_cache: str | None = None, settings=None) -> pl.DataFrame:
    """Scores of ``pairs`` (query_id, gallery_id, query_uri, gallery_uri) by ``matcher`` on a Ray Data actor
    pool, journalled under ``out`` (a rerun skips finished pairs); OUTPUT_COLUMNS in the order of ``pairs``.
    ``settings`` start or attach to Ray (None: the running Ray)."""
    return run_match_stage(pairs, matcher, out=out, options=options, actors=actors, batch_size=batch_size,
                           num_gpus=num_gpus, features_cache=features_cache,
                           gallery_features_cache=gallery_features_cache, settings=settings).results
