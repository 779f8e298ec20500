"""Gallery embeddings computed once per (model version, gallery data version) and kept under a cache
root (``REID_HOME/gallery-cache`` or an s3:// prefix).

The key hashes what changes the embeddings: the model version (its URI), the gallery's content (the
data version of the rows embedded, over the image column actually read, so re-segmented images count
as new data) and the test-time augmentation. A new model version or a changed gallery misses the
cache and is recomputed; nothing is ever overwritten in place.
"""

from __future__ import annotations

import hashlib
import io

import polars as pl

from reid_core.data import files as rio
from reid_core.tracking.provenance import data_version

CACHE_COLUMNS = ("image_id", "individual", "entity", "image_uri", "embedding")


def cache_key(model_uri: str, rows: pl.DataFrame, uri_column: str, flip_tta: bool) -> str:
    embedded = rows.with_columns(pl.col(uri_column).alias("image_uri"))
    parts = f"{model_uri}\n{data_version(embedded, length=64)}\nflip_tta={flip_tta}"
    return hashlib.sha256(parts.encode()).hexdigest()[:16]


def cache_uri(root: str, model_name: str, version: str, key: str) -> str:
    return rio.join(root, model_name, f"v{version}", f"gallery-{key}.parquet")


def load(uri: str) -> pl.DataFrame | None:
    if not rio.exists(uri):
        return None
    return pl.read_parquet(io.BytesIO(rio.read_bytes(uri)))


def save(uri: str, gallery: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    gallery.select(CACHE_COLUMNS).write_parquet(buffer)
    rio.write_bytes(uri, buffer.getvalue())  # atomic: a reader never sees half a file
