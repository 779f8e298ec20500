"""The pictures a registered model carries, made and logged when it is published.

The test split is embedded once (``engine.evaluate.embed_manifest``, the method's test-time
embedding) for the rank lists and the embedding plot (``reports.model_pictures``); the method adds
its own figures through ``Method.figures`` (DVE: the correspondence maps of AER's Fig. 4). Every
picture is a PNG artifact of the model's run under ``pictures/``, and the model version names them
in its tags: ``picture.<name>`` = the artifact path in the run (``pictures/rank_lists.png``), and
``pictures`` = ``runs:/<run_id>/pictures``.
"""

from __future__ import annotations

import warnings
from typing import Any

import polars as pl

from reid_core import tracking
from reid_core.data.dataset import select_images
from reid_core.data.files import read_image
from reid_core.engine.evaluate import embed_manifest
from reid_core.lifecycle.restore import Restored
from reid_core.reports.model_pictures import Match, RankedQuery, choose_rankings, embedding_plot, rank_lists
from reid_core.settings import Settings

PICTURES_DIR = "pictures"
TAG_PREFIX = "picture."
QUERIES = 4
TOP_K = 5


def _image(uri: str):
    try:
        return read_image(uri)
    except (OSError, ValueError):  # a grey tile rather than no picture
        return None


def model_pictures(restored: Restored, rows: pl.DataFrame, use_masked: bool = True, *, queries: int = QUERIES,
                   top_k: int = TOP_K, title: str | None = None) -> dict[str, Any]:
    """name -> PIL image: ``rank_lists``, ``embeddings`` and the method's own figures, on the test split
    (masked images where the model was trained on them, as evaluation does)."""
    test = rows.filter(pl.col("split") == "test")
    if test.is_empty():
        return {}
    images = select_images(test, use_masked)
    shown = images.rows
    method, config, network = restored.method, restored.config, restored.model
    features = embed_manifest(method, network, shown, method.eval_transform(config), column=images.column)
    uris, entities = shown[images.column].to_list(), shown["entity"].to_list()
    pictures: dict[str, Any] = {}
    ranked = [RankedQuery(_image(uris[q]), entities[q],
                          [Match(_image(uris[g]), entities[g], score, entities[g] == entities[q]) for g, score in matches])
              for q, matches in choose_rankings(features, shown, queries=queries, top_k=top_k)]
    if ranked:
        pictures["rank_lists"] = rank_lists(ranked)
    column = "individual" if "individual" in shown.columns and shown["individual"].null_count() == 0 else "entity"
    pictures["embeddings"] = embedding_plot(features, shown[column].to_list(), title or method.name)
    pictures.update(method.figures(network, config, shown, images.column))
    return pictures


def log_model_pictures(restored: Restored, rows: pl.DataFrame, run_id: str, name: str, version: str, *,
                       use_masked: bool = True, settings: Settings | None = None) -> dict[str, str]:
    """Make the pictures, log them to ``run_id`` and tag version ``version`` of ``name`` with their
    paths; returns name -> artifact path. A picture that cannot be made is a warning, never a failed
    publish."""
    try:
        pictures = model_pictures(restored, rows, use_masked, title=f"{name} v{version}")
        paths = {key: tracking.log_image(run_id, image, f"{PICTURES_DIR}/{key}.png", settings=settings)
                 for key, image in pictures.items()}
    except Exception as error:  # pictures are for people: the model is published regardless
        warnings.warn(f"{name} v{version}: no model pictures ({type(error).__name__}: {error})", stacklevel=2)
        return {}
    if paths:
        tracking.tag_version(name, version, {**{f"{TAG_PREFIX}{k}": p for k, p in paths.items()},
                                             "pictures": f"runs:/{run_id}/{PICTURES_DIR}"}, settings=settings)
    return paths
