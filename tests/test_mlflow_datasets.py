"""The manifest as an MLflow dataset input, on a real SQLite-backed MLflow store."""

import json
from pathlib import Path

import polars as pl
from mlflow import MlflowClient

from reid_core import tracking
from reid_core.data import manifest
from reid_core.settings import Settings


def _inputs(client: MlflowClient, run_id: str) -> list:
    return client.get_run(run_id).inputs.dataset_inputs


def test_runs_on_different_manifests_carry_name_digest_and_source(tiny_synthetic, tmp_path):
    settings = Settings.from_env()
    rows = manifest.read(tiny_synthetic)
    # The same images with one test image moved to the validation split: another data version.
    first_test = rows.filter(pl.col("split") == "test")["image_id"][0]
    resplit = rows.with_columns(pl.when(pl.col("image_id") == first_test).then(pl.lit("val"))
                                .otherwise(pl.col("split")).alias("split"))
    other = str(tmp_path / "resplit" / "manifest.parquet")
    Path(other).parent.mkdir()
    manifest.write(resplit, other)

    # MLflow keeps one dataset per (name, digest) in an experiment, whichever source logged it first:
    # the S3 copy goes to an experiment of its own.
    runs = [tracking.start_run(experiment, "test", f"run-{i}", settings=settings)
            for i, experiment in enumerate(("reid-dve", "reid-dve", "reid-dve-on-s3"))]
    digests = [
        tracking.log_manifest_input(runs[0], rows, tiny_synthetic, "synthetic-tiger", settings=settings),
        tracking.log_manifest_input(runs[1], resplit, other, "synthetic-tiger", settings=settings),
        tracking.log_manifest_input(runs[2], rows, "s3://reid-data/synthetic/manifest.parquet", "synthetic-tiger",
                                    settings=settings),
    ]

    client = MlflowClient(settings.tracking_uri)
    logged = [_inputs(client, run_id) for run_id in runs]
    assert [len(inputs) for inputs in logged] == [1, 1, 1]
    local, moved, on_s3 = (inputs[0] for inputs in logged)
    assert local.dataset.name == "synthetic-tiger"
    assert local.dataset.digest == tracking.data_version(rows) == digests[0]
    assert local.dataset.source_type == "local"
    assert json.loads(local.dataset.source)["uri"] == str(Path(tiny_synthetic).resolve())
    assert {t.key: t.value for t in local.tags} == {"mlflow.data.context": "training"}
    assert json.loads(local.dataset.profile)["num_rows"] == rows.height
    # Different content, different digest: the runs are told apart by their data.
    assert moved.dataset.digest == tracking.data_version(resplit) == digests[1] != digests[0]
    assert json.loads(moved.dataset.source)["uri"] == str(Path(other).resolve())
    # Same content on S3: same digest, an s3 source.
    assert on_s3.dataset.digest == digests[0]
    assert on_s3.dataset.source_type == "s3"
    assert json.loads(on_s3.dataset.source)["uri"] == "s3://reid-data/synthetic/manifest.parquet"

# A training run (train.py) logging its manifest: tests/test_model_pictures.py, on the model it publishes;
# a sweep's parent and trial runs: tests/test_console_output.py.
