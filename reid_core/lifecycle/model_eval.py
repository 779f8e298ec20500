"""Evaluate a logged or registered model on one species' test split with that species' protocol.

Shared by promotion (candidate vs production) and the transfer matrix (every model x every test set).
It works from the model URI alone: the pt2 program embeds (the method's test-time embedding is baked
in at logging), and the MLmodel metadata written by ``publish`` names the method and image size, so
the method registry gives the matching eval transform. Nothing here is DVE-specific.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from reid_core import tracking
from reid_core.data import manifest
from reid_core.data.dataset import images_to_evaluate
from reid_core.engine.evaluate import embed_rows, protocol_for
from reid_core.evaluation.protocols import evaluate_manifest
from reid_core.lifecycle.local_rerank import LocalRerank, fused_metrics
from reid_core.methods.registry import get_method
from reid_core.settings import Settings

TEST_SPLIT = "test"


@dataclass
class ModelEvaluation:
    uri: str
    species: str
    protocol: str
    n_images: int
    metrics: dict[str, float]


def species_rows(manifest_uri: str, species: str, split: str, df: pl.DataFrame | None = None) -> pl.DataFrame:
    """The ``split`` rows of ``species`` (possibly none)."""
    df = manifest.read(manifest_uri) if df is None else df
    return df.filter((pl.col("species") == species) & (pl.col("split") == split))


def species_test_rows(manifest_uri: str, species: str, df: pl.DataFrame | None = None) -> pl.DataFrame:
    """The ``test`` rows of ``species``; errors name the file and the fix."""
    df = manifest.read(manifest_uri) if df is None else df
    rows = df.filter(pl.col("species") == species)
    if rows.is_empty():
        known = ", ".join(sorted(df["species"].unique().to_list()))
        raise ValueError(f"manifest {manifest_uri} has no rows of species {species!r} (it has: {known}); "
                         "pass the manifest that species was trained on with --manifest")
    test = rows.filter(pl.col("split") == TEST_SPLIT)
    if test.is_empty():
        splits = ", ".join(sorted(rows["split"].drop_nulls().unique().to_list()))
        raise ValueError(f"manifest {manifest_uri} has no {TEST_SPLIT!r} rows for species {species!r} "
                         f"(its splits: {splits}); convert the dataset with a test split "
                         "(python -m reid_core.data.convert ...) or point --manifest at one that has it")
    return test


def eval_transform_for(uri: str, settings: Settings | None = None):
    """The method's eval transform, from the config in the model's MLmodel metadata."""
    metadata = tracking.model_metadata(uri, settings)
    if "method" not in metadata or "config" not in metadata:
        raise ValueError(f"{uri} has no 'method' and 'config' in its MLmodel metadata, so its preprocessing is "
                         "unknown; log models with reid_core.lifecycle.publish")
    method = get_method(metadata["method"])
    return method.eval_transform(method.load_config(metadata["config"]))


def evaluate_model(
    uri: str,
    rows: pl.DataFrame,
    *,
    settings: Settings | None = None,
    use_masked: bool = True,
    batch_size: int = 64,
    protocol: str | None = None,
    rerank: LocalRerank | None = None,
    calibration_rows: pl.DataFrame | None = None,
) -> ModelEvaluation:
    """Metrics (``evaluate_manifest`` names: mAP, rank1, ...) of model ``uri`` on the test ``rows``; with
    ``rerank``, also ``fused.*``: re-ranked by local-feature matching, calibrated on ``calibration_rows``
    (validation rows of the same species).

    ``uri`` is any MLflow model URI; resolve aliases to a version first (``models:/name/7``) when the
    result must name exactly which model was measured.
    """
    model = tracking.load_model(uri, settings)
    transform = eval_transform_for(uri, settings)
    protocol = protocol or protocol_for(rows)
    # A pt2 program has eval behaviour baked in (and cannot be switched); just call it.
    images = images_to_evaluate(rows, use_masked, "test")
    features = embed_rows(model, images.rows, transform, column=images.column, batch_size=batch_size)
    metrics = evaluate_manifest(features, images.rows, protocol, split=None)
    if rerank is not None:
        calibration = calibration_rows if calibration_rows is not None else rows.clear()
        metrics |= fused_metrics(
            lambda part, column: embed_rows(model, part, transform, column=column, batch_size=batch_size),
            pl.concat([rows, calibration], how="diagonal_relaxed"), use_masked, rerank, protocol)
    species = rows["species"][0] if rows.height else ""
    return ModelEvaluation(uri, species, protocol, rows.height, {k: float(v) for k, v in metrics.items()})
