"""Reading runs back as polars tables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from reid_core.settings import Settings
from reid_core.tracking.store import configure

PAGE_SIZE = 1000


def _search(client: MlflowClient, experiment_ids: list[str], filter_string: str, order_by: list[str]) -> Iterator[Run]:
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, run_view_type=ViewType.ACTIVE_ONLY,
                                  max_results=PAGE_SIZE, order_by=order_by, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _row(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        **{f"params.{k}": v for k, v in run.data.params.items()},
        **{f"metrics.{k}": v for k, v in run.data.metrics.items()},
        **{f"tags.{k}": v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
    }


def runs_frame(runs: list[Run]) -> pl.DataFrame:
    """One row per run: run_id, run_name, status, start/end time (ms), ``params.*`` (strings),
    ``metrics.*`` (latest values, floats) and ``tags.*``; columns a run lacks are null."""
    rows = [_row(run) for run in runs]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    schema = {c: (pl.Float64 if c.startswith("metrics.") else pl.Int64 if c.endswith("_time") else pl.String)
              for c in columns or ["run_id", "run_name", "status", "start_time", "end_time"]}
    return pl.DataFrame([{c: row.get(c) for c in schema} for row in rows], schema=schema)


def child_runs(parent_run_id: str, settings: Settings | None = None) -> pl.DataFrame:
    """The trials of a sweep, oldest first, as :func:`runs_frame`."""
    client = configure(settings)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    runs = _search(client, [experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
                   ["attributes.start_time ASC"])
    return runs_frame(list(runs))


def latest_run(experiment: str, filter_string: str = "", settings: Settings | None = None) -> Run | None:
    """Most recently started active run of experiment ``experiment`` (a name) matching ``filter_string``
    (MLflow search syntax, e.g. ``"tags.species = 'tiger' and tags.run_kind = 'sweep'"``)."""
    client = configure(settings)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    page = client.search_runs([found.experiment_id], filter_string=filter_string, max_results=1,
                              order_by=["attributes.start_time DESC"])
    return page[0] if page else None
