"""The manifest a run trained on, as an MLflow dataset input (the UI's Dataset column).

MLflow's own dataset API: a ``PolarsDataset`` of the rows the run used (MLflow records its schema and
row count, never the rows), named ``<dataset>-<species>``, whose digest is the project's data
version (``provenance.data_version``: the same value as the runs' ``data_version`` tag) and whose
source is the manifest's URI, a local path or an ``s3://`` URI (MLflow's ``local`` / ``s3`` sources).
Two runs on different data show different digests; the same data the same digest, wherever it lies
(MLflow keeps one dataset per name and digest in an experiment: the source first logged with it).
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
from mlflow.data.dataset_source import DatasetSource
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from reid_core.data import files as rio
from reid_core.settings import Settings
from reid_core.tracking.provenance import data_version
from reid_core.tracking.store import configure

TRAINING = "training"  # the input's context tag (mlflow.data.context)


def manifest_source(uri: str) -> DatasetSource:
    """MLflow's dataset source for a manifest URI: ``s3`` for ``s3://...``, else ``local`` (absolute path)."""
    from mlflow.data.dataset_source_registry import get_registered_sources

    uri = rio.absolute(uri)
    kind = "s3" if rio.is_s3(uri) else "local"
    for source in get_registered_sources():
        if source._get_source_type() == kind:
            return source(uri)
    raise RuntimeError(f"this MLflow has no {kind!r} dataset source for {uri}")


def dataset_name(dataset: str, species: Iterable[str] | str) -> str:
    """``synthetic-tiger``; several species joined with ``+`` (``synthetic-tiger+yak``)."""
    names = [species] if isinstance(species, str) else list(species)
    return f"{dataset}-{'+'.join(names)}"


def manifest_dataset(rows: pl.DataFrame, manifest_uri: str, name: str, digest: str | None = None):
    """An MLflow dataset for ``rows`` of the manifest at ``manifest_uri`` (digest: their data version)."""
    import mlflow.data

    return mlflow.data.from_polars(rows, source=manifest_source(manifest_uri), name=name,
                                   digest=digest or data_version(rows))


def log_manifest_input(run_ids: str | Iterable[str], rows: pl.DataFrame, manifest_uri: str, name: str,
                       *, context: str = TRAINING, settings: Settings | None = None) -> str:
    """Log ``rows`` (of ``manifest_uri``) as the dataset input of each run; returns the digest."""
    dataset = manifest_dataset(rows, manifest_uri, name)
    entity = DatasetInput(dataset=dataset._to_mlflow_entity(),
                          tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)])
    client = configure(settings)
    for run_id in [run_ids] if isinstance(run_ids, str) else run_ids:
        client.log_inputs(run_id, datasets=[entity])
    return dataset.digest
