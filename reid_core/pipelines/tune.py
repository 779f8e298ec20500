"""Hyperparameter search for one method over one or more species: Ray Tune + Optuna (seeded TPE) + ASHA.

Per species: one Optuna study, one MLflow parent run ("sweep"), every trial a child run whose params
and per-epoch metrics are logged from the Tune driver (one writer per store). Each trial is a full
training: in-process (``workers_per_trial=0``) or DDP on Ray Train (``TorchTrainer`` reporting to Tune).
The best trial is evaluated on the test split, logged as a model and registered with alias
``candidate``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from reid_core import tracking
from reid_core.data import io as rio
from reid_core.engine import checkpoint as ckpt
from reid_core.engine.loop import TrainJob, check_job, load_species_rows, train, train_worker, training_images
from reid_core.engine.session import TuneTrialSession
from reid_core.methods.registry import get_method
from reid_core.pipelines import console
from reid_core.pipelines.publish import publish
from reid_core.pipelines.ray_runtime import init_ray
from reid_core.pipelines.restore import latest_checkpoint, restore
from reid_core.pipelines.search_space import SearchSpace
from reid_core.pipelines.train import original_images_note, scaling_config
from reid_core.settings import Settings

METRIC = "val.mAP"
TIME_ATTR = "tuned_epoch"  # epochs of the stages the method lets the tuner count


@dataclass
class TuneRequest:
    method: str
    species: list[str]
    manifest: str
    preset: str = "paper"
    num_samples: int = 8
    max_concurrent: int = 2
    workers_per_trial: int = 0
    epochs: int | None = None  # None: the method's default (the paper's)
    use_gpu: bool = False
    seed: int = 0
    bounds: dict[str, Any] = field(default_factory=dict)  # search-space overrides by dotted key
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed dotted config values for every trial
    use_masked: bool = True
    dataset: str = "custom"
    cpus_per_trial: float = 1.0
    cache_images: bool = False
    verbose: bool = False  # Ray Tune's status tables and the trials' own output on the console


@dataclass
class SpeciesResult:
    species: str
    parent_run_id: str
    best_trial_run_id: str
    best_params: dict[str, Any]
    val_mAP: float
    test_metrics: dict[str, float]
    registered_name: str
    version: str

    def row(self) -> dict[str, Any]:
        return {
            "species": self.species,
            "best_params": ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.best_params.items())),
            "val_mAP": round(self.val_mAP, 4),
            "test_mAP": round(self.test_metrics.get("test.mAP", float("nan")), 4),
            "test_rank1": round(self.test_metrics.get("test.rank1", float("nan")), 4),
            "model": f"{self.registered_name} v{self.version}",
        }


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_trial(config: dict, *, base: dict, workers: int, storage_path: str, cpus_per_trial: float,
              verbose: bool = False) -> None:
    """The Tune function trainable: one full training with the sampled overrides."""
    import ray.tune

    job = TrainJob(**{**base, "overrides": {**base["overrides"], **config}})
    if workers == 0:
        import torch

        torch.set_num_threads(max(1, int(cpus_per_trial)))
        train(job, TuneTrialSession(use_gpu=job.use_gpu))
        return

    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        train_worker,
        train_loop_config=job.to_dict(),
        scaling_config=scaling_config(workers, job.use_gpu, cpus_per_trial),
        run_config=ray.train.RunConfig(
            name=f"trial-{ray.tune.get_context().get_trial_id()}",
            storage_path=storage_path,
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=console.train_logging_config(verbose),
        ),
    )
    trainer.fit()


def _trial_logger(parent_run_id: str, tags: Mapping[str, str], settings: Settings, data_input=None):
    """A Tune callback (driver side) mirroring each trial into an MLflow child run as it runs;
    ``data_input(run_id)`` logs the sweep's manifest as the run's dataset input."""
    from ray.tune import Callback

    class TrialRunLogger(Callback):
        def __init__(self) -> None:
            self.run_ids: dict[str, str] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.run_ids[trial.trial_id] = tracking.start_trial_run(
                parent_run_id, params=trial.config, tags={**tags, "trial_id": trial.trial_id},
                run_name=f"trial-{trial.trial_id}", settings=settings)
            if data_input is not None:
                data_input(self.run_ids[trial.trial_id])

        def on_trial_result(self, iteration, trials, trial, result, **info):
            metrics = {k: v for k, v in result.items() if k.startswith(("train.", "val."))}
            tracking.log_metrics(self.run_ids[trial.trial_id], metrics, step=int(result.get("epoch", 0)),
                                 settings=settings)

        def on_trial_complete(self, iteration, trials, trial, **info):
            tracking.end_run(self.run_ids[trial.trial_id], "FINISHED", settings=settings)

        def on_trial_error(self, iteration, trials, trial, **info):
            tracking.end_run(self.run_ids[trial.trial_id], "FAILED", settings=settings)

    return TrialRunLogger()


def _trial_progress(species: str, num_samples: int, epochs: int, enabled: bool = True):
    """A Tune callback (driver side) moving one progress over the sweep's trials: finished (completed,
    stopped early by ASHA or failed) of ``num_samples``, with the running trials, the epochs trained
    so far and the best validation mAP as its status."""
    from ray.tune import Callback

    class TrialProgress(Callback):
        def __init__(self) -> None:
            self.bar = console.Progress(f"tune {species}", num_samples, "trials", enabled=enabled)
            self.epochs: dict[str, int] = {}
            self.scores: dict[str, float] = {}  # each trial's latest val.mAP (what picks the best trial)
            self.stopped_early = self.failed = 0

        def _best(self) -> tuple[str, float] | None:
            return max(self.scores.items(), key=lambda item: item[1]) if self.scores else None

        def _status(self, trials, ended=None) -> dict:
            running = sum(1 for t in trials if t.status == "RUNNING" and t is not ended)
            best = self._best()
            return {"running": running, "epochs": f"{sum(self.epochs.values())}/{num_samples * epochs}",
                    f"best {METRIC}": f"{best[1]:.4g} ({best[0]})" if best else None}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.epochs[trial.trial_id] = int(result.get(TIME_ATTR, self.epochs.get(trial.trial_id, 0)))
            if METRIC in result:
                self.scores[trial.trial_id] = float(result[METRIC])
            self.bar.set_status(**self._status(trials))

        def on_trial_complete(self, iteration, trials, trial, **info):
            if self.epochs.get(trial.trial_id, 0) < epochs:
                self.stopped_early += 1
            self.bar.advance(1, **self._status(trials, ended=trial))

        def on_trial_error(self, iteration, trials, trial, **info):
            self.failed += 1
            self.scores.pop(trial.trial_id, None)
            self.bar.advance(1, **self._status(trials, ended=trial))

        def summary(self) -> str:
            best = self._best()
            text = (f"{self.bar.done} trials, {sum(self.epochs.values())} epochs ({self.stopped_early} stopped "
                    f"early by ASHA, {self.failed} failed)")
            return text + (f", best {METRIC} {best[1]:.4g} (trial {best[0]})" if best else "")

    return TrialProgress()


def _best_checkpoint_dir(best, storage_path: str) -> Path:
    if best.checkpoint is not None:  # in-process trials report checkpoints to Tune itself
        return ckpt.local_directory(best.checkpoint, Path(storage_path) / "downloaded")
    # DDP trials: the TorchTrainer persisted them under its own run name.
    return latest_checkpoint(Path(storage_path) / f"trial-{best.metrics['trial_id']}")


def tuning_job(request: TuneRequest, species: str) -> TrainJob:
    """The training every trial of ``species`` runs, before the sampled values are applied."""
    fixed = dict(request.overrides)
    if request.epochs:
        fixed[get_method(request.method).epochs_key] = request.epochs
    return TrainJob(manifest=request.manifest, species=species, method=request.method, preset=request.preset,
                    overrides=fixed, seed=request.seed, use_masked=request.use_masked, use_gpu=request.use_gpu,
                    cache_images=request.cache_images)


def checked_rows(request: TuneRequest, species: str) -> pl.DataFrame:
    """The species' rows, after the checks that would otherwise fail inside every trial."""
    rows = load_species_rows(request.manifest, species)
    if rows.filter(pl.col("split") == "val").is_empty():
        raise ValueError(f"species {species!r} has no 'val' rows in {request.manifest}: tuning selects on "
                         "validation mAP. Convert with a validation split (e.g. --val-per-entity 1 for ATRW).")
    check_job(tuning_job(request, species), rows, max(1, request.workers_per_trial))
    return rows


def tune_species(request: TuneRequest, species: str, settings: Settings) -> SpeciesResult:
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    rows = checked_rows(request, species)
    base_job = tuning_job(request, species)
    method, config = base_job.method_and_config()
    epochs = sum(plan.epochs for plan in method.plan(config) if plan.tuned)
    experiment = tracking.experiment_name(request.method)
    tracking.get_or_create_experiment(experiment, settings)
    tags = tracking.standard_tags(species=species, method=request.method, dataset=request.dataset,
                                  data_version=tracking.data_version(rows), manifest=rio.absolute(request.manifest))
    fixed = base_job.overrides
    if note := original_images_note(base_job, training_images(method, config, rows, request.use_masked).column):
        print(note)
    parent = tracking.start_sweep_run(
        experiment, species, request.method, tags=tags,
        params={"num_samples": request.num_samples, "workers_per_trial": request.workers_per_trial,
                "seed": request.seed, "bounds": request.bounds, "use_masked": request.use_masked,
                "preset": request.preset, **{f"fixed.{k}": v for k, v in fixed.items()}},
        settings=settings)
    data_name = tracking.dataset_name(request.dataset, species)

    def data_input(run_id: str) -> None:
        tracking.log_manifest_input(run_id, rows, request.manifest, data_name, settings=settings)

    data_input(parent)

    base = base_job.to_dict()
    storage_path = str(settings.ray_storage / "tune" / f"{request.method}-{species}-{parent[:8]}")
    trainable = functools.partial(run_trial, base=base, workers=request.workers_per_trial,
                                  storage_path=storage_path, cpus_per_trial=request.cpus_per_trial,
                                  verbose=request.verbose)
    # An in-process trial trains in the trial actor; a DDP trial only coordinates its workers.
    trial_resources = ({"cpu": request.cpus_per_trial, "gpu": 1 if request.use_gpu else 0}
                       if request.workers_per_trial == 0 else {"cpu": 0.1})
    search = OptunaSearch(
        space=SearchSpace(request.method, request.bounds),
        metric=METRIC, mode="max", sampler=TPESampler(seed=request.seed),
    )
    scheduler = ASHAScheduler(time_attr=TIME_ATTR, max_t=epochs, grace_period=max(1, epochs // 3))
    progress = _trial_progress(species, request.num_samples, epochs)
    tuner = tune.Tuner(
        tune.with_resources(trainable, trial_resources),
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, metric=METRIC, mode="max",
                                    num_samples=request.num_samples,
                                    max_concurrent_trials=request.max_concurrent),
        run_config=tune.RunConfig(name=f"tune-{request.method}-{species}", storage_path=storage_path,
                                  callbacks=[_trial_logger(parent, tags, settings, data_input), progress],
                                  verbose=console.tune_verbosity(request.verbose)),
    )
    started = time.perf_counter()
    with progress.bar, console.tune_output(request.verbose):
        results = tuner.fit()
    progress.bar.close(progress.summary())
    if results.num_errors == len(results) or not len(results):
        tracking.end_run(parent, "FAILED", settings=settings)
        raise RuntimeError(f"every trial of the {species} sweep failed; first error: {results.errors[:1]}")
    best = results.get_best_result(metric=METRIC, mode="max", scope="last")
    restored = restore(_best_checkpoint_dir(best, storage_path))
    trial_run = tracking.child_runs(parent, settings=settings).filter(
        pl.col("tags.trial_id") == best.metrics["trial_id"])["run_id"][0]
    published = publish(restored, rows, trial_run, species=species, tags=tags, use_masked=request.use_masked)
    best_params = {k: best.config[k] for k in sorted(best.config)}
    tracking.log_metrics(parent, {**published.metrics, "best.val.mAP": float(best.metrics[METRIC]),
                                  "sweep_seconds": time.perf_counter() - started}, settings=settings)
    tracking.log_params(parent, {f"best.{k}": v for k, v in best_params.items()}, settings=settings)
    tracking.set_tags(parent, {"best_trial_run_id": trial_run, "registered_model": published.registered_name,
                               "registered_version": published.version}, settings=settings)
    result = SpeciesResult(species, parent, trial_run, best_params, float(best.metrics[METRIC]),
                           published.metrics, published.registered_name, published.version)
    tracking.log_table(parent, pl.DataFrame([result.row()]), "summary.md", settings=settings)
    tracking.end_run(parent, "FINISHED", settings=settings)
    return result


def run_tuning(request: TuneRequest, settings: Settings) -> pl.DataFrame:
    """Tune every requested species in turn; returns the summary table (one row per species)."""
    for species in request.species:
        checked_rows(request, species)  # every species' mistakes before Ray starts
    init_ray(settings, verbose=request.verbose)
    results = [tune_species(request, species, settings) for species in request.species]
    return pl.DataFrame([r.row() for r in results])
