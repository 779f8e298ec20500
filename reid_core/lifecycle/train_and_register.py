"""Train and register: one training job, from its data to a registered model, callable from a notebook.

    checkpoint = trainer(job, run_name)        in-process by default; the command line passes Ray Train DDP
    restored   = restore(checkpoint)           the best epoch on validation
    run        = log_training_run(...)         tags, the manifest as dataset input, params, per-epoch history
    published  = publish(...)                  test split, the embedding model, version with alias 'candidate'

How the training runs is a parameter (a ``Trainer``: job and run name in, checkpoint folder out), so this
module needs no Ray: ``pipelines.train.ray_trainer`` gives the DDP one. The pieces are public because the
other workflows use the parts that fit them: ``compare`` trains and tests each seed in a Ray task
(``train_and_test``) and logs it as a child run of its comparison (``log_training_run``) without
registering; ``tune`` logs its trials while they run and publishes its best one (``publish_checkpoint``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from reid_core import tracking
from reid_core.data import files as rio
from reid_core.engine import checkpoint as ckpt
from reid_core.engine.loop import TrainJob, load_species_rows, train
from reid_core.engine.session import LocalSession
from reid_core.lifecycle.local_rerank import LocalRerank
from reid_core.lifecycle.open_set_calibration import DEFAULT_MATCHERS
from reid_core.lifecycle.publish import Published, publish, test_metrics
from reid_core.lifecycle.restore import Restored, restore
from reid_core.settings import Settings

# (job, run name) -> the folder of its latest checkpoint. Rerunning with the same run name resumes.
Trainer = Callable[[TrainJob, str], Path]
RUN_KIND = "train"


def in_process(settings: Settings) -> Trainer:
    """The trainer without Ray: the engine's loop in this process, checkpoints under
    ``<checkpoints>/<run name>`` (a rerun resumes from the latest)."""

    def run(job: TrainJob, run_name: str) -> Path:
        return train_locally(job, settings.checkpoints_dir / run_name)

    return run


def train_locally(job: TrainJob, directory: Path) -> Path:
    """Train ``job`` in this process with checkpoints under ``directory``; returns the latest checkpoint."""
    session = LocalSession(directory, use_gpu=job.use_gpu)
    train(job, session)
    return session.store.latest()


def finished_checkpoint(directory: Path, epochs: int) -> Path | None:
    """The latest checkpoint under ``directory`` when its history covers all ``epochs``, else None."""
    latest = ckpt.LocalCheckpoints(directory).latest()
    if latest is None:
        return None
    return latest if len(ckpt.load_progress(latest).history) >= epochs else None


@dataclass
class Tested:
    """A training and its test-split metrics (``test.*``), ready to be logged."""

    checkpoint: Path
    restored: Restored
    metrics: dict[str, float]
    skipped_training: bool  # the checkpoint had every epoch already: nothing was trained
    train_seconds: float  # training, or finding the finished checkpoint; testing not included


def train_and_test(job: TrainJob, directory: Path, epochs: int, rows: pl.DataFrame | None = None,
                   rerank: LocalRerank | None = None) -> Tested:
    """Train in-process unless ``directory`` holds a finished training already, then test its best epoch
    (with ``rerank``, also re-ranked by local-feature matching: ``test.fused.*``)."""
    started = time.perf_counter()
    checkpoint = finished_checkpoint(directory, epochs)
    skipped = checkpoint is not None
    if checkpoint is None:
        checkpoint = train_locally(job, directory)
    train_seconds = time.perf_counter() - started
    restored = restore(checkpoint)
    rows = load_species_rows(job.manifest, job.species) if rows is None else rows
    return Tested(checkpoint, restored, test_metrics(restored, rows, job.use_masked, rerank), skipped, train_seconds)


def training_tags(job: TrainJob, rows: pl.DataFrame, dataset: str) -> dict[str, str]:
    """The standard tags of a training run; ``publish`` copies them onto the model version."""
    return tracking.standard_tags(species=job.species, method=job.method, dataset=dataset,
                                  data_version=tracking.data_version(rows), manifest=rio.absolute(job.manifest))


def log_training_run(
    job: TrainJob,
    rows: pl.DataFrame,
    history: Sequence[Mapping[str, Any]],
    *,
    run_name: str,
    dataset: str,
    params: Mapping[str, Any],
    tags: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    final_metrics: Mapping[str, float] | None = None,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
) -> str:
    """One MLflow run for one training; returns its id, RUNNING when it has no parent (``publish`` then
    adds the model and ``end_run`` closes it), FINISHED as a child run (``parent_run_id``: it inherits
    the parent's tags; ``tags`` add to them).

    ``params``: nested dicts become dotted keys. ``metrics`` are logged at step 0, ``history`` per epoch,
    ``final_metrics`` (e.g. ``test.*``) after the last epoch, so a child run's table shows them.
    """
    if parent_run_id is None:
        run_id = tracking.start_run(tracking.experiment_name(job.method), RUN_KIND, run_name,
                                    tags={**training_tags(job, rows, dataset), **(tags or {})},
                                    params=params, settings=settings)
        tracking.log_metrics(run_id, metrics or {}, settings=settings)
        tracking.log_metrics_history(run_id, history, settings=settings)
        if final_metrics:
            tracking.log_metrics(run_id, final_metrics, step=len(history), settings=settings)
    else:
        run_id = tracking.log_trial_run(parent_run_id, params, history, final_metrics=final_metrics, tags=tags,
                                        run_name=run_name, settings=settings)
        tracking.log_metrics(run_id, metrics or {}, settings=settings)
    tracking.log_manifest_input(run_id, rows, job.manifest, tracking.dataset_name(dataset, job.species),
                                settings=settings)
    return run_id


def publish_checkpoint(checkpoint: Path, rows: pl.DataFrame, run_id: str, *, species: str, tags: Mapping[str, str],
                       use_masked: bool = True, matchers: tuple[str, ...] = DEFAULT_MATCHERS,
                       matcher_options: Mapping[str, dict] | None = None,
                       settings: Settings | None = None) -> tuple[Restored, Published]:
    """Restore a checkpoint's best epoch and publish it on run ``run_id`` (test metrics, model, version;
    identify's calibration for the global model and ``matchers``)."""
    restored = restore(checkpoint)
    return restored, publish(restored, rows, run_id, species=species, tags=dict(tags), use_masked=use_masked,
                             matchers=matchers, matcher_options=matcher_options, settings=settings)


@dataclass
class Registered:
    """A training logged as run ``run_id`` of ``experiment`` and registered as ``published``."""

    run_id: str
    experiment: str
    restored: Restored
    published: Published

    def row(self, species: str) -> dict[str, Any]:
        """The one-line summary the command line prints: test metrics (4 decimals) and the version."""
        metrics = {k: round(v, 4) for k, v in self.published.metrics.items() if k.startswith("test.") and "n_" not in k}
        return {"species": species, **metrics,
                "model": f"{self.published.registered_name} v{self.published.version}"}


def train_and_register(
    job: TrainJob,
    *,
    run_name: str | None = None,
    dataset: str = "custom",
    trainer: Trainer | None = None,
    rows: pl.DataFrame | None = None,
    params: Mapping[str, Any] | None = None,
    matchers: tuple[str, ...] = DEFAULT_MATCHERS,
    matcher_options: Mapping[str, dict] | None = None,
    settings: Settings | None = None,
) -> Registered:
    """Train ``job``, log it as a run of ``reid-<method>``, evaluate it on the test split and register it as
    a version of ``reid-<method>-<species>`` with alias 'candidate'.

    ``trainer`` defaults to :func:`in_process`; ``rows`` (the species' manifest rows) are read when not
    given; ``params`` add to the logged ones (seed, preset, use_masked and the validated config); ``matchers``:
    the local matchers identify's calibration covers besides the global model (``matcher_options``: their
    options, e.g. LightGlue weights from a path or s3://, which identify then uses).
    """
    settings = settings or Settings.from_env()
    settings.ensure_dirs()
    run_name = run_name or f"{job.method}-{job.species}"
    rows = load_species_rows(job.manifest, job.species) if rows is None else rows
    checkpoint = (trainer or in_process(settings))(job, run_name)
    progress = ckpt.load_progress(checkpoint)
    meta = progress.meta
    run_id = log_training_run(
        job, rows, progress.history, run_name=run_name, dataset=dataset, settings=settings,
        params={**(params or {}), "seed": job.seed, "use_masked": job.use_masked, "preset": job.preset,
                **meta["config"]},
        metrics={"data.left_out_unmasked": meta.get("left_out_unmasked", 0)})
    tags = training_tags(job, rows, dataset)
    try:
        restored, published = publish_checkpoint(checkpoint, rows, run_id, species=job.species, tags=tags,
                                                  use_masked=job.use_masked, matchers=matchers,
                                                  matcher_options=matcher_options, settings=settings)
    except BaseException:
        tracking.end_run(run_id, "FAILED", settings=settings)
        raise
    tracking.end_run(run_id, "FINISHED", settings=settings)
    return Registered(run_id, tracking.experiment_name(job.method), restored, published)
