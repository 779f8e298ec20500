"""Sweep (parent) and trial (child) runs, metrics, params, tags and tables.

Everything goes through ``MlflowClient`` with explicit run ids, never the fluent active-run stack,
so the Tune driver can log any trial at any time from any thread (one writer per store).
"""

from __future__ import annotations

import io
import numbers
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

from reid_core.settings import Settings
from reid_core.tracking.store import configure, get_or_create_experiment

MetricsHistory = Sequence[Mapping[str, Any]] | Mapping[int, Mapping[str, Any]]
# Keys of a per-epoch record that say which step it is rather than being a metric.
STEP_KEYS = ("epoch", "step")
# MLflow's own tags (run name, source, parent): a trial inherits every other tag of its sweep, so
# trials filter like sweeps (`tags.species = 'tiger'`).
SYSTEM_TAG_PREFIX = "mlflow."


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested configs as ``a.b`` keys with string values (MLflow params are strings)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def numeric_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a result dict; Tune results also carry ids, dates and configs."""
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def _timestamp_ms() -> int:
    return int(time.time() * 1000)


def _log_batch(client: MlflowClient, run_id: str, metrics: Iterable[Metric] = (),
               params: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None) -> None:
    # log_batch rejects more than 1000 metrics or 100 params/tags per call.
    for chunk in _chunks(list(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=chunk)
    for chunk in _chunks([Param(k, v) for k, v in (params or {}).items()], MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks([RunTag(k, str(v)) for k, v in (tags or {}).items()], MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=chunk)


def _history_items(history: MetricsHistory) -> Iterator[tuple[int, Mapping[str, Any]]]:
    if isinstance(history, Mapping):
        yield from ((int(step), values) for step, values in sorted(history.items()))
        return
    for index, values in enumerate(history):
        step = next((values[k] for k in STEP_KEYS if k in values), index)
        yield int(step), {k: v for k, v in values.items() if k not in STEP_KEYS}


def log_metrics(run_id: str, metrics: Mapping[str, Any], step: int | None = None,
                settings: Settings | None = None) -> None:
    """Log the numeric entries of ``metrics`` at ``step`` (0 when None)."""
    now = _timestamp_ms()
    batch = [Metric(k, v, now, step or 0) for k, v in numeric_metrics(metrics).items()]
    _log_batch(configure(settings), run_id, metrics=batch)


def log_metrics_history(run_id: str, history: MetricsHistory, settings: Settings | None = None) -> int:
    """Log per-epoch metrics with ``step=epoch``; returns the number of values logged.

    ``history`` is either ``{epoch: {name: value}}`` or a list of per-epoch dicts, where an
    ``epoch``/``step`` key gives the step (otherwise the list index does).
    """
    now = _timestamp_ms()
    batch = [Metric(k, v, now, step) for step, values in _history_items(history)
             for k, v in numeric_metrics(values).items()]
    _log_batch(configure(settings), run_id, metrics=batch)
    return len(batch)


def log_params(run_id: str, params: Mapping[str, Any], settings: Settings | None = None) -> None:
    """Log (nested) params; MLflow params are write-once, so a changed value raises."""
    _log_batch(configure(settings), run_id, params=flatten(params))


def set_tags(run_id: str, tags: Mapping[str, Any], settings: Settings | None = None) -> None:
    _log_batch(configure(settings), run_id, tags={k: str(v) for k, v in tags.items()})


def end_run(run_id: str, status: str = "FINISHED", settings: Settings | None = None) -> None:
    """Close a run: FINISHED, FAILED or KILLED (e.g. a trial stopped early by ASHA)."""
    configure(settings).set_terminated(run_id, status=status)


def start_run(experiment: str, run_kind: str, run_name: str, tags: Mapping[str, Any] | None = None,
              params: Mapping[str, Any] | None = None, settings: Settings | None = None) -> str:
    """Create a RUNNING run of kind ``run_kind`` (tag ``run_kind``, e.g. "transfer_matrix") in experiment
    ``experiment`` (a name); returns its id. Close it with :func:`end_run`."""
    client = configure(settings)
    experiment_id = get_or_create_experiment(experiment, settings)
    all_tags = {**{k: str(v) for k, v in (tags or {}).items()}, "run_kind": run_kind}
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    if params:
        log_params(run.info.run_id, params, settings)
    return run.info.run_id


def log_artifacts(run_id: str, local_dir: str | Path, artifact_path: str | None = None,
                  settings: Settings | None = None) -> None:
    """Upload every file under ``local_dir`` to the run (under ``artifact_path``)."""
    configure(settings).log_artifacts(run_id, str(local_dir), artifact_path=artifact_path)


def start_sweep_run(experiment: str, species: str, method: str, tags: Mapping[str, Any] | None = None,
                    params: Mapping[str, Any] | None = None, run_name: str | None = None,
                    settings: Settings | None = None) -> str:
    """Create the parent run of one species' sweep in experiment ``experiment`` (a name); returns its id.

    The run stays RUNNING until :func:`end_run`. Pass :func:`standard_tags` in ``tags``.
    """
    return start_run(experiment, "sweep", run_name or f"sweep-{species}",
                     {"species": species, "method": method, **(tags or {})}, params, settings)


def start_trial_run(parent_run_id: str, params: Mapping[str, Any] | None = None,
                    tags: Mapping[str, Any] | None = None, run_name: str | None = None,
                    settings: Settings | None = None) -> str:
    """Create a RUNNING child run nested under ``parent_run_id`` (tag ``mlflow.parentRunId``).

    The child inherits the parent's own (non-``mlflow.``) tags; ``tags`` override them.
    """
    client = configure(settings)
    parent = client.get_run(parent_run_id)
    inherited = {k: v for k, v in parent.data.tags.items() if not k.startswith(SYSTEM_TAG_PREFIX)}
    all_tags = {**inherited, "run_kind": "trial", **{k: str(v) for k, v in (tags or {}).items()},
                MLFLOW_PARENT_RUN_ID: parent_run_id}
    run = client.create_run(parent.info.experiment_id, run_name=run_name, tags=all_tags)
    if params:
        log_params(run.info.run_id, params, settings)
    return run.info.run_id


def log_trial_run(parent_run_id: str, params: Mapping[str, Any], metrics_history: MetricsHistory,
                  final_metrics: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
                  run_name: str | None = None, status: str = "FINISHED",
                  settings: Settings | None = None) -> str:
    """Log a finished trial as a child run in one go; returns the child run id.

    Per-epoch metrics go in at ``step=epoch``; ``final_metrics`` at the step after the last epoch,
    so they are the run's latest values (what the runs table shows and search_runs filters on).
    """
    run_id = start_trial_run(parent_run_id, params=params, tags=tags, run_name=run_name, settings=settings)
    log_metrics_history(run_id, metrics_history, settings)
    if final_metrics:
        steps = [step for step, _ in _history_items(metrics_history)]
        log_metrics(run_id, final_metrics, step=max(steps, default=-1) + 1, settings=settings)
    end_run(run_id, status=status, settings=settings)
    return run_id


def log_text(run_id: str, text: str, artifact_file: str, settings: Settings | None = None) -> None:
    """Attach a text artifact (a Markdown table from ``reports.tables``, a note) to a run."""
    configure(settings).log_text(run_id, text, artifact_file)


def load_text(run_id: str, artifact_file: str, settings: Settings | None = None) -> str:
    """A text artifact of a run back (``log_text``'s counterpart), e.g. a model version's calibration JSON."""
    client = configure(settings)
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, artifact_file, tmp)).read_text()


def log_table(run_id: str, df: pl.DataFrame, artifact_file: str, settings: Settings | None = None) -> None:
    """Attach a table to a run; the extension picks the format.

    ``.json``: an MLflow table (shown in the UI's artifact view and evaluation tab);
    ``.csv``; ``.parquet``. (A Markdown table: ``reports.tables.markdown_table`` and ``log_text``.)
    """
    client = configure(settings)
    suffix = PurePosixPath(artifact_file).suffix.lower()
    if suffix == ".json":
        client.log_table(run_id, df.to_pandas(), artifact_file)
    elif suffix == ".csv":
        client.log_text(run_id, df.write_csv(), artifact_file)
    elif suffix == ".parquet":
        buffer = io.BytesIO()
        df.write_parquet(buffer)
        _log_bytes(client, run_id, buffer.getvalue(), artifact_file)
    else:
        raise ValueError(f"log_table: unsupported extension {suffix!r} in {artifact_file!r}; "
                         "use .json, .csv, .md or .parquet")


def _log_bytes(client: MlflowClient, run_id: str, data: bytes, artifact_file: str) -> None:
    path = PurePosixPath(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / path.name
        local.write_bytes(data)
        client.log_artifact(run_id, str(local), artifact_path=str(path.parent) if str(path.parent) != "." else None)



def log_image(run_id: str, image, artifact_file: str, settings: Settings | None = None) -> str:
    """Attach a PIL image (or an HxWx3 uint8 array) to a run as ``artifact_file`` (e.g. ``pictures/x.png``);
    returns the artifact path."""
    configure(settings).log_image(run_id, image, artifact_file=artifact_file)
    return artifact_file
