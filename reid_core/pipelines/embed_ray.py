"""A registered model's embeddings of many images on Ray Data: an actor pool (one model per actor,
fractional GPUs allowed), batches, and a per-row error instead of a failed job.

Each actor loads the pt2 program from its MLflow URI once and prepares images with the method's eval
transform (from the model's metadata), through the one image decoder (``data.io.read_image``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from reid_core.data import files as rio
from reid_core.settings import Settings

RESULT_SCHEMA = pa.schema([("image_id", pa.string()), ("embedding", pa.list_(pa.float32())),
                           ("error", pa.string())])


@dataclass(frozen=True)
class EmbedSpec:
    model_uri: str  # models:/<name>/<version>
    settings: Settings
    flip_tta: bool = False  # the mean of the embeddings of the image and its mirror image
    device: str = "cpu"


class Embedder:
    """One per actor: the model and its transform are built here, next to the GPU."""

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

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        from reid_core.evaluation.tta import flip_embed

        rows = batch.to_pylist()
        prepared = [self._prepare(row["uri"]) for row in rows]
        good = [tensor for tensor, error in prepared if error is None]
        embeddings: list = []
        if good:
            images = torch.stack(good).to(self.spec.device)
            with torch.inference_mode():
                out = flip_embed(self.model, images, mode="mean") if self.spec.flip_tta else self.model(images)
            embeddings = list(out.float().cpu().numpy())
        records, taken = [], iter(embeddings)
        for row, (_, error) in zip(rows, prepared, strict=True):
            vector = None if error else next(taken).tolist()
            records.append({"image_id": row["image_id"], "embedding": vector, "error": error})
        return pa.Table.from_pylist(records, schema=RESULT_SCHEMA)


@dataclass
class EmbedRun:
    results: pl.DataFrame  # image_id, embedding (list[f32] or null), error
    seconds: float
    first_batch_s: float | None


def embed_with_ray(rows: pl.DataFrame, spec: EmbedSpec, *, uri_column: str, actors: int = 1, batch_size: int = 32,
                   num_cpus: float = 1.0, num_gpus: float = 0.0, env: dict | None = None,
                   on_batch=None) -> EmbedRun:
    """Embeddings of ``rows[uri_column]``, one result row per input row (order not kept).

    ``on_batch(table)`` is called on the driver for every finished batch (to journal it as it comes).
    """
    import ray

    table = rows.select(pl.col("image_id"), pl.col(uri_column).alias("uri")).to_arrow(
        compat_level=pl.CompatLevel.oldest())
    blocks = [table.slice(i, batch_size) for i in range(0, table.num_rows, batch_size)]  # actors share from batch 1
    dataset = ray.data.from_arrow(blocks).map_batches(
        Embedder, fn_constructor_kwargs={"spec": spec}, batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=num_cpus, num_gpus=num_gpus or None,
        **({"runtime_env": {"env_vars": env}} if env else {}),
    )
    started, first, parts = time.perf_counter(), None, []
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        first = first if first is not None else time.perf_counter() - started
        parts.append(batch)
        if on_batch is not None:
            on_batch(batch)
    results = pl.from_arrow(pa.concat_tables(parts)) if parts else pl.from_arrow(RESULT_SCHEMA.empty_table())
    return EmbedRun(results, time.perf_counter() - started, first)


def as_matrix(embeddings: pl.Series) -> np.ndarray:
    """(N, D) float32 from a list column of equal-length vectors."""
    return np.asarray(embeddings.to_list(), dtype=np.float32).reshape(len(embeddings), -1)
