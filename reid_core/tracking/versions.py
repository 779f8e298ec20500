"""Finding registered versions and logged models, with errors that say how to look them up.

A model reference on the command line is one of: a version number (``7``), an alias (``@candidate``),
a run (``run:<run_id>``: the model that run logged) or any MLflow model URI (``models:/...``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from reid_core.settings import Settings
from reid_core.tracking.registry import is_missing
from reid_core.tracking.store import configure

LIST_HINT = "list its versions with `python workflows/promote.py --model {name} --list`"
# Version tags worth a column in a listing (written by publish and by promotion).
LISTED_TAGS = ("test.mAP", "test.rank1", "data_version", "promotion_decision", "promoted_at",
               "previous_production_version", "rolled_back_at")


class ModelNotFoundError(LookupError):
    """A registered model, version, alias or run's model that does not exist; the message says what does."""


def _require_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if not is_missing(error):
            raise
        known = sorted(m.name for m in client.search_registered_models(max_results=100))
        raise ModelNotFoundError(
            f"registered model {name!r} does not exist; registered models: {', '.join(known) or '(none)'}. "
            "Names are reid-<method>-<species>; a tune run registers one (python workflows/tune_dve.py ...)"
        ) from None


def get_version(name: str, version: str | int | None = None, alias: str | None = None,
                settings: Settings | None = None) -> ModelVersion:
    """Version ``version`` of ``name``, or the one ``alias`` points at (exactly one of the two)."""
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version or alias")
    client = configure(settings)
    _require_model(client, name)
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, str(version))
    except MlflowException as error:
        if not is_missing(error):
            raise
        what = f"alias {alias!r}" if alias is not None else f"version {version}"
        raise ModelNotFoundError(f"{name} has no {what}; {LIST_HINT.format(name=name)}") from None


def _short(value: str) -> str:
    try:
        return f"{float(value):.4g}" if "." in value else value
    except ValueError:
        return value


def list_versions(name: str, settings: Settings | None = None) -> pl.DataFrame:
    """One row per version of ``name``, newest first: version, aliases, created, run_id, key tags."""
    client = configure(settings)
    _require_model(client, name)
    # Version search results carry no aliases (3.17, SQLite); the registered model has them all.
    aliases: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for v in client.search_model_versions(f"name = '{name}'"):
        created = datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        tags = {t: v.tags.get(t, "") for t in LISTED_TAGS}
        rows.append({"version": int(v.version), "aliases": ",".join(sorted(aliases.get(str(v.version), []))),
                     "created": created, "run_id": v.run_id or "",
                     **{t: _short(x) if t.startswith("test.") else x for t, x in tags.items()}})
    schema = {"version": pl.Int64, **{c: pl.String for c in ("aliases", "created", "run_id", *LISTED_TAGS)}}
    return pl.DataFrame(rows, schema=schema).sort("version", descending=True)


def run_model_uri(run_id: str, settings: Settings | None = None) -> str:
    """``models:/m-<id>`` of the model run ``run_id`` logged (the newest if it logged several)."""
    client = configure(settings)
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if not is_missing(error):
            raise
        raise ModelNotFoundError(f"run {run_id!r} does not exist; copy a run id from the MLflow UI "
                                 "(`make ui`) or a workflow's output") from None
    found = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'",
                                        order_by=[{"field_name": "creation_time", "ascending": False}])
    if not found:
        raise ModelNotFoundError(f"run {run_id} logged no model; the best trial of a tune sweep logs one "
                                 "(its parent run's tag best_trial_run_id names it)")
    return found[0].model_uri
