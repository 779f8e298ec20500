"""Helpers for the model-lifecycle tests: tiny DVE models published through the real publish path,
and manifests where it is known in advance which model is better.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch
from conftest import TINY_DVE, TINY_PRESET

from reid_core import tracking
from reid_core.data import manifest, synthetic
from reid_core.engine.evaluate import evaluate_split
from reid_core.lifecycle.publish import Published, publish
from reid_core.lifecycle.restore import Restored
from reid_core.methods.registry import get_method
from reid_core.settings import Settings

SPECIES = ("tiger", "yak")


def two_species(out: Path) -> str:
    """tiger and yak, 6 individuals x 4 images at 48 px; test: 2 individuals x 2 sides per species."""
    synthetic.generate(out, species=SPECIES, individuals=6, images_per_individual=4, size=48, seed=0,
                       val_fraction=0.2, test_fraction=0.4, workers=1)
    return str(out / "manifest.parquet")


def query_equals_gallery(source: str, out: Path) -> str:
    """The same manifest, except each test query shows the very image of its entity's gallery entry.

    A model whose embedding depends on the image then ranks every query's positive first at distance 0
    (mAP 1.0), while a collapsed model (one embedding for every image) ranks by gallery order (mAP < 1).
    Cameras are made unique so the same-entity-same-camera rule never removes a positive.
    """
    df = manifest.read(source)
    gallery = (df.filter((pl.col("split") == "test") & (pl.col("role") == "gallery"))
               .group_by("entity").agg(pl.col("image_uri").first().alias("gallery_uri")))
    df = (df.join(gallery, on="entity", how="left")
          .with_columns(pl.when((pl.col("split") == "test") & (pl.col("role") == "query"))
                        .then(pl.col("gallery_uri")).otherwise(pl.col("image_uri")).alias("image_uri"),
                        pl.col("image_id").alias("camera"))
          .drop("gallery_uri"))
    path = str(out / "query_equals_gallery.parquet")
    manifest.write(df, path)
    return path


def tiny_dve(seed: int, collapsed: bool = False) -> Restored:
    """A random-weight CPU-sized DVE; ``collapsed`` maps every image to the same embedding."""
    method = get_method("dve")
    config = method.config(TINY_PRESET, TINY_DVE)
    torch.manual_seed(seed)
    network = method.build(config, num_classes=6).eval()
    if collapsed:
        with torch.no_grad():
            linear = network.bottleneck[0]
            linear.weight.zero_()
            linear.bias.fill_(1.0)
    return Restored(method, config, network, progress=None)


def publish_model(restored: Restored, manifest_uri: str, species: str, settings: Settings) -> Published:
    """Log and register ``restored`` as a new version of reid-dve-<species> via the real publish path."""
    rows = manifest.read(manifest_uri).filter(pl.col("species") == species)
    run_id = tracking.start_sweep_run("reid-dve", species, "dve", settings=settings, run_name=f"fixture-{species}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REID_HOME", str(settings.home))  # publish writes to the default store
        published = publish(restored, rows, run_id, species=species, tags={"species": species, "manifest": manifest_uri})
    tracking.end_run(run_id, settings=settings)
    return published


def direct_metrics(restored: Restored, manifest_uri: str, species: str) -> dict[str, float]:
    """The in-memory network's test metrics: an independent path to compare logged-model results with."""
    rows = manifest.read(manifest_uri).filter(pl.col("species") == species)
    transform = restored.method.eval_transform(restored.config)
    return evaluate_split(restored.method, restored.model, rows, transform, "test")
