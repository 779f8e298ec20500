"""A registered model's embeddings of many images, as a row stage (``row_stage``): an actor pool (one
model per actor, fractional GPUs allowed), batches, and a per-row error instead of a failed job.

Each actor loads the pt2 program from its MLflow URI once and prepares images with the method's eval
transform (from the model's metadata), through the one image decoder (``data.files.read_image``). A
record is done when it holds an embedding of the same image (``embed_uri``) by the same model with the
same test-time augmentation (``embed_config``): identify journals them and embeds only what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from reid_core.data import files as rio
from reid_core.pipelines import row_stage
from reid_core.pipelines.row_stage import CONFIG
from reid_core.settings import Settings

RESULT_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("embedding", pa.list_(pa.float32())),
    ("embed_uri", pa.string()),  # the image embedded
    ("embed_status", pa.string()),  # ok / failed
    ("embed_error", pa.string()),
    ("embed_config", pa.string()),  # the model version and the augmentation
    ("embed_time", pa.float64()),
])
STAGE = row_stage.Stage(name="embed", schema=RESULT_SCHEMA, status="embed_status", error="embed_error",
                        config="embed_config", time="embed_time", targets={"embed_uri": "_uri"},
                        redo_other_config=True)


@dataclass(frozen=True)
class EmbedSpec:
    model_uri: str  # models:/<name>/<version>
    settings: Settings
    flip_tta: bool = False  # the mean of the embeddings of the image and its mirror image
    device: str = "cpu"

    def config(self) -> str:
        """What makes two embeddings of an image comparable (the device is not part of it)."""
        return json.dumps({"model_uri": self.model_uri, "flip_tta": self.flip_tta}, sort_keys=True)


class Embedder:
    """One per actor: the model and its transform are built here, next to the GPU. Rows: image_id, _uri."""

    def __init__(self, spec: EmbedSpec) -> None:
        from reid_core import tracking
        from reid_core.lifecycle.model_eval import eval_transform_for

        self.spec = spec
        self.model = tracking.load_model(spec.model_uri, spec.settings).to(spec.device)
        self.transform = eval_transform_for(spec.model_uri, spec.settings)

    def _prepare(self, uri: str):
        try:
            return self.transform(rio.read_image(uri)), None
        except Exception as error:  # recorded per row: unreadable, truncated, missing
            return None, f"{type(error).__name__}: {error}"

    def __call__(self, rows: list[dict]) -> list[dict]:
        import torch

        from reid_core.evaluation.tta import flip_embed

        prepared = [self._prepare(row["_uri"]) for row in rows]
        good = [tensor for tensor, error in prepared if error is None]
        embeddings: list = []
        if good:
            images = torch.stack(good).to(self.spec.device)
            with torch.inference_mode():
                out = flip_embed(self.model, images, mode="mean") if self.spec.flip_tta else self.model(images)
            embeddings = list(out.float().cpu().numpy())
        records, taken, config = [], iter(embeddings), self.spec.config()
        for row, (_, error) in zip(rows, prepared, strict=True):
            records.append({"image_id": row["image_id"], "embedding": None if error else next(taken).tolist(),
                            "embed_uri": row["_uri"], "embed_status": "failed" if error else "ok",
                            "embed_error": error, "embed_config": config})
        return records


@dataclass
class EmbedRun:
    results: pl.DataFrame  # RESULT_SCHEMA: image_id, embedding (list[f32] or null), embed_error, ...
    seconds: float
    first_batch_s: float | None


def embed_with_ray(rows: pl.DataFrame, spec: EmbedSpec, *, uri_column: str, actors: int = 1, batch_size: int = 32,
                   num_cpus: float = 1.0, num_gpus: float = 0.0, env: dict | None = None,
                   journal_dir: str | None = None, settings: Settings | None = None) -> EmbedRun:
    """Embeddings of ``rows[uri_column]``, one result row per input row (order not kept), on the running
    Ray (or the one ``settings`` start or attach to); journalled under ``journal_dir`` where given."""
    work = rows.select(pl.col("image_id"), pl.col(uri_column).alias("_uri"), pl.lit(spec.config()).alias(CONFIG))
    pool = row_stage.Pool(actors=actors, batch_size=batch_size, num_cpus=num_cpus, num_gpus=num_gpus, env=env or {})
    execution = row_stage.execute(STAGE, work, Embedder, spec, pool, journal_dir=journal_dir, settings=settings,
                                  label="embed")
    return EmbedRun(execution.records, execution.run_s, execution.first_batch_s)


def as_matrix(embeddings: pl.Series) -> np.ndarray:
    """(N, D) float32 from a list column of equal-length vectors."""
    return np.asarray(embeddings.to_list(), dtype=np.float32).reshape(len(embeddings), -1)
