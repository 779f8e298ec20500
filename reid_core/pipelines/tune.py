"""Hyperparameter search for one method over one or more species: Ray Tune + Optuna (seeded TPE) + ASHA.

Per species: one Optuna study, one MLflow parent run ("sweep"), every trial a child run whose params
and per-epoch metrics are logged from the Tune driver (one writer per store). Each trial is a full
training: in-process (``workers_per_trial=0``) or DDP on Ray Train (``TorchTrainer`` reporting to Tune).
The best trial is evaluated on the test split, logged as a model and registered with alias
``candidate`` (``lifecycle.train_and_register.publish_checkpoint``, the command line's train's last step).

Failures: a trial whose worker (or node) is lost is restarted from its last checkpoint, up to
``max_failures`` times (Tune's failure config). A killed driver is continued with ``resume=True``
(``--resume``): the sweep's record (``sweep_record``) names its parent run and Tune's experiment, which
``Tuner.restore`` continues without rerunning finished trials; the best model is registered as usual.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from reid_core import tracking
from reid_core.data import files as rio
from reid_core.engine import checkpoint as ckpt
from reid_core.engine.loop import TrainJob, check_job, load_species_rows, train, train_worker, training_images
from reid_core.engine.ray_storage import StorageArgs, storage_args
from reid_core.engine.session import TuneTrialSession
from reid_core.lifecycle import sweep_record as records
from reid_core.lifecycle.restore import latest_checkpoint
from reid_core.lifecycle.train_and_register import publish_checkpoint
from reid_core.methods.registry import get_method
from reid_core.methods.search_space import SearchSpace
from reid_core.pipelines import console
from reid_core.pipelines.ray_runtime import init_ray
from reid_core.pipelines.train import original_images_note, scaling_config
from reid_core.pipelines.tune_callbacks import METRIC, TIME_ATTR, trial_logger, trial_progress
from reid_core.reports.tables import markdown_table
from reid_core.settings import Settings


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
    max_failures: int = 2  # restarts of a trial (from its last checkpoint) after a lost worker or node
    resume: bool = False  # continue each species' latest sweep (its record) instead of starting one
    calibrate: tuple[str, ...] = ("sift",)  # local matchers identify's calibration covers (the best trial's model)
    matcher_options: dict[str, dict] = field(default_factory=dict)  # their options (weights), by matcher


# What a sweep's trials depend on: a resume must match the sweep it continues on every one of these.
IDENTITY_FIELDS = ("method", "manifest", "preset", "num_samples", "workers_per_trial", "epochs", "use_gpu",
                   "seed", "bounds", "overrides", "use_masked", "cpus_per_trial", "cache_images")


def request_identity(request: TuneRequest) -> dict[str, Any]:
    identity = {name: getattr(request, name) for name in IDENTITY_FIELDS}
    return identity | {"manifest": rio.absolute(request.manifest)}


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


def run_trial(config: dict, *, base: dict, workers: int, storage: StorageArgs, cpus_per_trial: float,
              max_failures: int = 0, verbose: bool = False) -> None:
    """The Tune function trainable: one full training with the sampled overrides. A DDP trial restarted
    by Tune reruns its TorchTrainer under the same name, which resumes from that trainer's checkpoint."""
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
            storage_path=storage.path,
            storage_filesystem=storage.filesystem,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=console.train_logging_config(verbose),
        ),
    )
    trainer.fit()


def _best_checkpoint_dir(best, storage: str, settings: Settings) -> Path:
    """A local folder with the best trial's checkpoint (downloaded when the Ray storage is remote)."""
    downloads = settings.checkpoints_dir / "tune-downloads" / best.metrics["trial_id"]
    if best.checkpoint is not None:  # in-process trials report checkpoints to Tune itself
        return ckpt.local_directory(best.checkpoint, downloads)
    # DDP trials: the TorchTrainer persisted them under its own run name.
    return latest_checkpoint(rio.join(storage, f"trial-{best.metrics['trial_id']}"), downloads)


def tuning_job(request: TuneRequest, species: str) -> TrainJob:
    """The training every trial of ``species`` runs, before the sampled values are applied."""
    fixed = dict(request.overrides)
    if request.epochs:
        epochs_key = get_method(request.method).epochs_key
        if epochs_key is None:
            raise ValueError(f"method {request.method!r} trains nothing, so it takes no epochs; leave --epochs out")
        fixed[epochs_key] = request.epochs
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


def _start_sweep(request: TuneRequest, species: str, rows: pl.DataFrame, tags: dict, data_input,
                 settings: Settings) -> records.SweepRecord:
    """A new parent run, and the record a later ``--resume`` continues from."""
    previous = records.load(settings, request.method, species)
    if previous is not None and not previous.finished:
        print(f"note: the earlier {species} sweep (parent run {previous.parent_run_id}) did not finish; this "
              "starts a new one (--resume would have continued it)")
    fixed = tuning_job(request, species).overrides
    parent = tracking.start_sweep_run(
        tracking.experiment_name(request.method), species, request.method, tags=tags,
        params={"num_samples": request.num_samples, "workers_per_trial": request.workers_per_trial,
                "seed": request.seed, "bounds": request.bounds, "use_masked": request.use_masked,
                "preset": request.preset, **{f"fixed.{k}": v for k, v in fixed.items()}},
        settings=settings)
    data_input(parent)
    record = records.SweepRecord(
        method=request.method, species=species, parent_run_id=parent,
        storage=rio.join(records.sweeps_dir(settings, request.method, species), parent[:8]),
        experiment=f"tune-{request.method}-{species}", request=request_identity(request))
    records.save(record, settings)
    return record


def _resumed_sweep(request: TuneRequest, species: str, settings: Settings) -> records.SweepRecord:
    """The record of the sweep ``--resume`` continues, after checking it is the same sweep."""
    record = records.for_resume(settings, request.method, species)
    differences = records.mismatches(record.request, request_identity(request))
    if differences:
        raise ValueError(f"--resume continues the {species} sweep as it was started "
                         f"({records.record_uri(settings, request.method, species)}), but these differ: "
                         f"{'; '.join(differences)}. Resume with the same options, or run without --resume")
    return record


def _tuner(request: TuneRequest, record: records.SweepRecord, trainable, callbacks_for, epochs: int,
           settings: Settings):
    """Tune's Tuner for the sweep: restored from its experiment when resuming (finished trials stay
    finished, unfinished and errored ones go on from their checkpoints), else a new one. Returns the
    tuner and its progress callback."""
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    storage = storage_args(record.storage, settings)
    experiment = storage_args(record.experiment_path, settings)
    if request.resume and tune.Tuner.can_restore(experiment.path, storage_filesystem=experiment.filesystem):
        tuner = tune.Tuner.restore(experiment.path, trainable, resume_errored=True,
                                   storage_filesystem=experiment.filesystem)
        done = sum(1 for result in tuner.get_results() if result.error or (result.metrics or {}).get("done"))
        callbacks, progress = callbacks_for(done)
        # Tune restores the callbacks pickled with the first driver's Tuner (whose progress bar is not
        # this driver's) and takes no new ones: hand it this driver's.
        tuner._local_tuner.get_run_config().callbacks = callbacks
        return tuner, progress
    callbacks, progress = callbacks_for(0)
    search = OptunaSearch(space=SearchSpace(request.method, request.bounds, record.species), metric=METRIC, mode="max",
                          sampler=TPESampler(seed=request.seed))
    scheduler = ASHAScheduler(time_attr=TIME_ATTR, max_t=epochs, grace_period=max(1, epochs // 3))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, metric=METRIC, mode="max",
                                    num_samples=request.num_samples,
                                    max_concurrent_trials=request.max_concurrent),
        run_config=tune.RunConfig(name=record.experiment, storage_path=storage.path,
                                  storage_filesystem=storage.filesystem, callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=request.max_failures),
                                  verbose=console.tune_verbosity(request.verbose)),
    )
    return tuner, progress


def tune_species(request: TuneRequest, species: str, settings: Settings) -> SpeciesResult:
    from ray import tune

    if request.resume:
        record = _resumed_sweep(request, species, settings)
        if record.finished:
            print(f"note: the {species} sweep (parent run {record.parent_run_id}) finished already: its result "
                  "is shown as it was (run without --resume to start a new sweep)")
            return SpeciesResult(**record.result)
    rows = checked_rows(request, species)
    base_job = tuning_job(request, species)
    method, config = base_job.method_and_config()
    epochs = sum(plan.epochs for plan in method.plan(config) if plan.tuned)
    tracking.get_or_create_experiment(tracking.experiment_name(request.method), settings)
    tags = tracking.standard_tags(species=species, method=request.method, dataset=request.dataset,
                                  data_version=tracking.data_version(rows), manifest=rio.absolute(request.manifest))
    if note := original_images_note(base_job, training_images(method, config, rows, request.use_masked).column):
        print(note)
    data_name = tracking.dataset_name(request.dataset, species)

    def data_input(run_id: str) -> None:
        tracking.log_manifest_input(run_id, rows, request.manifest, data_name, settings=settings)

    if request.resume:  # the killed driver left the parent RUNNING, or an all-failed sweep FAILED
        tracking.configure(settings).update_run(record.parent_run_id, status="RUNNING")
    else:
        record = _start_sweep(request, species, rows, tags, data_input, settings)
    parent = record.parent_run_id
    trainable = functools.partial(run_trial, base=base_job.to_dict(), workers=request.workers_per_trial,
                                  storage=storage_args(record.storage, settings),
                                  cpus_per_trial=request.cpus_per_trial, max_failures=request.max_failures,
                                  verbose=request.verbose)
    # An in-process trial trains in the trial actor; a DDP trial only coordinates its workers.
    trial_resources = ({"cpu": request.cpus_per_trial, "gpu": 1 if request.use_gpu else 0}
                       if request.workers_per_trial == 0 else {"cpu": 0.1})

    def callbacks_for(done: int):
        progress = trial_progress(species, request.num_samples, epochs, done=done)
        return [trial_logger(parent, tags, settings, data_input), progress], progress

    tuner, progress = _tuner(request, record, tune.with_resources(trainable, trial_resources), callbacks_for,
                             epochs, settings)
    started = time.perf_counter()
    with progress.bar, console.tune_output(request.verbose):
        results = tuner.fit()
    progress.bar.close(progress.summary())
    if results.num_errors == len(results) or not len(results):
        tracking.end_run(parent, "FAILED", settings=settings)
        raise RuntimeError(f"every trial of the {species} sweep failed; first error: {results.errors[:1]}")
    best = results.get_best_result(metric=METRIC, mode="max", scope="last")
    # The best trial's child run (logged by the trial logger while it trained) carries its model.
    trial_run = tracking.child_runs(parent, settings=settings).filter(
        pl.col("tags.trial_id") == best.metrics["trial_id"])["run_id"][0]
    _, published = publish_checkpoint(_best_checkpoint_dir(best, record.storage, settings), rows, trial_run,
                                      species=species, tags=tags, use_masked=request.use_masked,
                                      matchers=request.calibrate, matcher_options=request.matcher_options,
                                      settings=settings)
    best_params = {k: best.config[k] for k in sorted(best.config)}
    tracking.log_metrics(parent, {**published.metrics, "best.val.mAP": float(best.metrics[METRIC]),
                                  "sweep_seconds": time.perf_counter() - started}, settings=settings)
    tracking.log_params(parent, {f"best.{k}": v for k, v in best_params.items()}, settings=settings)
    tracking.set_tags(parent, {"best_trial_run_id": trial_run, "registered_model": published.registered_name,
                               "registered_version": published.version}, settings=settings)
    result = SpeciesResult(species, parent, trial_run, best_params, float(best.metrics[METRIC]),
                           published.metrics, published.registered_name, published.version)
    tracking.log_text(parent, markdown_table([result.row()], float_format=".4g") + "\n", "summary.md", settings=settings)
    tracking.end_run(parent, "FINISHED", settings=settings)
    record.finished, record.result = True, asdict(result)
    records.save(record, settings)
    return result


def run_tuning(request: TuneRequest, settings: Settings) -> pl.DataFrame:
    """Tune every requested species in turn; returns the summary table (one row per species)."""
    for species in request.species:  # every species' mistakes before Ray starts
        if request.resume:
            _resumed_sweep(request, species, settings)
        checked_rows(request, species)
        SearchSpace(request.method, request.bounds, species)  # unknown or malformed --bound
    init_ray(settings, verbose=request.verbose)
    results = [tune_species(request, species, settings) for species in request.species]
    return pl.DataFrame([r.row() for r in results])
