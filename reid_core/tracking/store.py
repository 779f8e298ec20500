"""Where tracking data lives: the MLflow client and the experiments.

The embedded default is SQLite under ``REID_HOME`` with artifacts in ``REID_HOME/mlartifacts``;
``MLFLOW_TRACKING_URI=http(s)://...`` switches to a shared server that owns (proxies) the artifacts.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from reid_core.settings import Settings

# Tracking URIs whose server decides where artifacts go (proxied `mlflow-artifacts:/` or its root).
REMOTE_SCHEMES = frozenset({"http", "https", "databricks"})


def is_remote(tracking_uri: str) -> bool:
    """True for a tracking server; False for a store this process writes itself (SQLite, files)."""
    return urlparse(tracking_uri).scheme in REMOTE_SCHEMES


def configure(settings: Settings | None = None) -> MlflowClient:
    """Point MLflow (client and the process-wide URI) at the configured store and return a client.

    The process-wide URI is set too because ``mlflow.pytorch.log_model``/``load_model`` and
    ``models:/`` resolution only read the global one.
    """
    settings = settings or Settings.from_env()
    if not is_remote(settings.tracking_uri):
        # SQLite cannot create the directory that holds its file.
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def experiment_name(method: str) -> str:
    """One experiment per method: ``reid-<method>``."""
    return f"reid-{method}"


def experiment_artifact_location(name: str, settings: Settings) -> str | None:
    """Absolute ``file://`` URI for a local store; None (the server decides) for a tracking server.

    Without an explicit location MLflow uses ``./mlruns`` of the *current directory*, which for a
    Ray job is a temporary working dir that disappears with the job.
    """
    if is_remote(settings.tracking_uri):
        return None
    return Path(settings.artifacts_dir / name).resolve().as_uri()


def get_or_create_experiment(name: str, settings: Settings | None = None) -> str:
    """Experiment id for ``name``, creating it once (safe against a concurrent creator)."""
    settings = settings or Settings.from_env()
    client = configure(settings)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=experiment_artifact_location(name, settings))
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
            assert experiment is not None, f"experiment {name!r} reported as existing but not found"
    if experiment.lifecycle_stage == "deleted":
        # A deleted experiment keeps its name reserved until purged; reusing it silently would
        # resurrect old runs, so say what to do instead.
        raise RuntimeError(
            f"MLflow experiment {name!r} (id {experiment.experiment_id}) is deleted. Restore it with "
            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` or purge it with "
            "`mlflow gc` before logging to it again."
        )
    return experiment.experiment_id
