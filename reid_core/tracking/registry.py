"""The model registry: ``reid-<method>-<species>`` models, versions tagged with provenance, aliases.

MLflow 3 deprecates stages; lifecycle is aliases (``candidate``, ``production``) and tags.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from reid_core.settings import Settings
from reid_core.tracking.store import configure

CANDIDATE = "candidate"
PRODUCTION = "production"
_NAME_PART = re.compile(r"^[a-z0-9][a-z0-9_]*$")
# Run tags copied onto a version (unless given) so the registry alone tells what a version is.
PROVENANCE_TAGS = ("species", "method", "dataset", "data_version", "git_commit", "git_dirty")


def registered_model_name(method: str, species: str) -> str:
    """``reid-<method>-<species>``; both parts lower-case ``[a-z0-9_]`` so the name parses back."""
    for label, part in (("method", method), ("species", species)):
        if not _NAME_PART.match(part):
            raise ValueError(f"{label} {part!r} must be lower-case letters, digits and '_' "
                             f"(e.g. 'sea_turtle') to form a registered model name")
    return f"reid-{method}-{species}"


def parse_registered_model_name(name: str) -> tuple[str, str]:
    """``reid-dve-sea_turtle`` -> ``("dve", "sea_turtle")``; the inverse of :func:`registered_model_name`."""
    prefix, _, rest = name.partition("-")
    method, _, species = rest.partition("-")
    if prefix != "reid" or not _NAME_PART.match(method) or not _NAME_PART.match(species):
        raise ValueError(f"{name!r} is not a reid-<method>-<species> model name (e.g. reid-dve-tiger)")
    return method, species


def model_uri(name: str, alias: str = CANDIDATE) -> str:
    """URI that resolves an alias at load time, e.g. ``models:/reid-dve-tiger@production``."""
    return f"models:/{name}@{alias}"


def register(model_uri: str, name: str, tags: Mapping[str, Any] | None = None, alias: str | None = CANDIDATE,
             settings: Settings | None = None) -> ModelVersion:
    """Register a logged model (``models:/m-<id>``) as a new version of ``name`` and point ``alias`` at it.

    Creates the registered model if absent. Version tags: the source run's provenance tags, its
    ``run_id``, then ``tags`` (metrics, ...) as strings, which win. Returns the version, re-read so
    its tags and aliases are filled in.
    """
    client = configure(settings)
    # mlflow.register_model (not client.create_model_version) also links the version back to the
    # logged model (tag mlflow.modelVersions) so the UI shows it on the model page.
    version = mlflow.register_model(model_uri, name)
    run_id = version.run_id
    if run_id is None and version.model_id:
        # A models:/m-<id> source is registered without a run id; recover it from the logged model.
        run_id = client.get_logged_model(version.model_id).source_run_id
    all_tags: dict[str, str] = {}
    if run_id:
        run_tags = client.get_run(run_id).data.tags
        all_tags.update({k: run_tags[k] for k in PROVENANCE_TAGS if k in run_tags})
        all_tags["run_id"] = run_id
    all_tags.update({k: str(v) for k, v in (tags or {}).items()})
    for key, value in all_tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return client.get_model_version(name, version.version)


def is_missing(error: MlflowException) -> bool:
    """Whether a registry call failed because the model, version or alias does not exist."""
    # 3.17: a missing model/version is RESOURCE_DOES_NOT_EXIST, a missing alias INVALID_PARAMETER_VALUE.
    return error.error_code == "RESOURCE_DOES_NOT_EXIST" or (
        error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(error))


def get_version_by_alias(name: str, alias: str, settings: Settings | None = None) -> ModelVersion | None:
    """The version ``alias`` points at, or None when the model or the alias does not exist."""
    client = configure(settings)
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if is_missing(error):
            return None
        raise


def set_alias(name: str, alias: str, version: str | int, settings: Settings | None = None) -> None:
    """Point ``alias`` at ``version`` (an alias names one version at a time, so this moves it)."""
    configure(settings).set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str, settings: Settings | None = None) -> None:
    configure(settings).delete_registered_model_alias(name, alias)
