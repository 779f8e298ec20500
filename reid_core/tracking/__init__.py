"""Everything MLflow, behind small functions the pipelines call.

- ``store``: client and experiments (``reid-<method>``; SQLite + absolute artifact dir by default).
- ``provenance``: git commit, manifest data version, the standard tags.
- ``datasets``: the manifest a run trained on as an MLflow dataset input (digest = data version).
- ``runs``: sweep (parent) and trial (child) runs, metrics per epoch, params, tables.
- ``models``: log / load torch.export (pt2) models.
- ``registry``: ``reid-<method>-<species>`` versions, tags and aliases.
- ``versions``: resolving versions, aliases and runs' models; listing versions.
- ``promotion``: moving the ``production`` alias with tags that record why; rollback.
- ``queries``: runs back as polars tables.

Every function takes ``settings`` (default ``Settings.from_env()``) and uses explicit run ids, never
MLflow's fluent active-run state, so it is safe on a Ray Tune driver.
"""

from reid_core.tracking.datasets import dataset_name, log_manifest_input, manifest_dataset
from reid_core.tracking.models import load_model, log_reid_model, model_metadata, pip_requirements
from reid_core.tracking.promotion import move_production, production_version, rollback, tag_version
from reid_core.tracking.provenance import data_version, git_commit, git_dirty, standard_tags
from reid_core.tracking.queries import child_runs, latest_run, runs_frame
from reid_core.tracking.registry import (
    CANDIDATE,
    PRODUCTION,
    delete_alias,
    get_version_by_alias,
    model_uri,
    parse_registered_model_name,
    register,
    registered_model_name,
    set_alias,
)
from reid_core.tracking.runs import (
    end_run,
    load_text,
    log_artifacts,
    log_image,
    log_metrics,
    log_metrics_history,
    log_params,
    log_table,
    log_text,
    log_trial_run,
    set_tags,
    start_run,
    start_sweep_run,
    start_trial_run,
)
from reid_core.tracking.store import configure, experiment_name, get_or_create_experiment, is_remote
from reid_core.tracking.versions import ModelNotFoundError, get_version, list_versions, run_model_uri

__all__ = [
    "CANDIDATE",
    "ModelNotFoundError",
    "PRODUCTION",
    "child_runs",
    "configure",
    "data_version",
    "dataset_name",
    "delete_alias",
    "end_run",
    "experiment_name",
    "get_or_create_experiment",
    "get_version",
    "get_version_by_alias",
    "git_commit",
    "git_dirty",
    "is_remote",
    "latest_run",
    "list_versions",
    "load_model",
    "load_text",
    "manifest_dataset",
    "log_artifacts",
    "log_image",
    "log_manifest_input",
    "log_metrics",
    "log_metrics_history",
    "log_params",
    "log_reid_model",
    "log_table",
    "log_text",
    "log_trial_run",
    "model_metadata",
    "model_uri",
    "move_production",
    "parse_registered_model_name",
    "pip_requirements",
    "production_version",
    "register",
    "registered_model_name",
    "rollback",
    "run_model_uri",
    "runs_frame",
    "set_alias",
    "set_tags",
    "standard_tags",
    "start_run",
    "start_sweep_run",
    "start_trial_run",
    "tag_version",
]
