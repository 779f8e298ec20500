"""Run one training job: in-process (``workers=0``) or DDP on Ray Train (``workers>=1``).

Either way a rerun with the same ``run_name`` resumes from the last checkpoint: Ray Train keeps them
under ``<ray storage>/<run_name>`` (a local folder or s3://, ``REID_RAY_STORAGE``); in-process runs
under ``<checkpoints>/<run_name>``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid_core.engine import checkpoint as ckpt
from reid_core.engine.loop import TrainJob, train, train_worker
from reid_core.engine.ray_storage import storage_args
from reid_core.engine.session import LocalSession, Session
from reid_core.pipelines import console
from reid_core.pipelines.ray_runtime import init_ray
from reid_core.settings import Settings

# What the epoch progress shows of a report, by the name it shows.
PROGRESS_METRICS = {"loss": "train.loss", "val.mAP": "val.mAP"}


@dataclass
class TrainOutcome:
    checkpoint_dir: Path
    progress: ckpt.Progress


def scaling_config(workers: int, use_gpu: bool, cpus_per_worker: float = 1.0):
    from ray.train import ScalingConfig

    resources = {"GPU": 1} if use_gpu else {"CPU": cpus_per_worker}
    return ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources)


class ReportingSession:
    """A session that also hands each epoch's metrics to ``on_epoch`` (rank 0): the driver's progress."""

    def __init__(self, session: Session, on_epoch: Callable[[dict], None] | None) -> None:
        self.session = session
        self.on_epoch = on_epoch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def report(self, metrics: dict, state: dict | None, progress: ckpt.Progress) -> None:
        self.session.report(metrics, state, progress)
        if self.on_epoch is not None and self.session.rank == 0:
            self.on_epoch(dict(metrics))


def epoch_callback(progress_queue):
    """A Ray Train callback (it runs on the Train controller) putting rank 0's metrics of each epoch on
    ``progress_queue`` (a ``ray.util.queue.Queue``), which the driver drains into its progress bar."""
    import ray.train

    class EpochsToQueue(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if metrics:
                try:
                    progress_queue.put_nowait(dict(metrics[0]))
                except Exception:  # noqa: BLE001 - the progress bar must never fail a training
                    pass

    return EpochsToQueue()


def original_images_note(job: TrainJob, column: str) -> str | None:
    """What the driver says when masked images were wanted but the training rows have none (``column``
    is the image column training uses): the workers' own warning reaches the console only with --verbose."""
    if job.use_masked and column != "masked_uri":
        return (f"note: the {job.species!r} training rows have no masked images (masked_uri): training on the "
                "original images, backgrounds included (segment them first with workflows/segment.py)")
    return None


def total_epochs(job: TrainJob) -> int:
    method, config = job.method_and_config()
    return sum(plan.epochs for plan in method.plan(config))


def epoch_progress(job: TrainJob, enabled: bool = True) -> tuple[console.Progress, Callable[[dict], None]]:
    """A progress over the job's epochs and the callback that moves it from an epoch's metrics."""
    bar = console.Progress(f"train {job.method} {job.species}", total_epochs(job), "epochs", enabled=enabled)

    def on_epoch(metrics: dict) -> None:
        status = {label: metrics[key] for label, key in PROGRESS_METRICS.items() if key in metrics}
        bar.update_to(int(metrics.get("epoch", bar.done)) + 1, **status)

    return bar, on_epoch


def epoch_summary(progress: ckpt.Progress) -> str:
    best = progress.meta.get("best") or {}
    text = f"{len(progress.history)} epochs"
    if best:
        text += f", best val.mAP {best['score']:.4g} at epoch {best['epoch'] + 1}"
    return text


def run_training(
    job: TrainJob,
    *,
    workers: int,
    run_name: str,
    settings: Settings,
    max_failures: int = 2,
    cpus_per_worker: float = 1.0,
    verbose: bool = False,
    show_progress: bool = True,
) -> TrainOutcome:
    bar, on_epoch = epoch_progress(job, enabled=show_progress)
    if workers == 0:
        session = LocalSession(settings.checkpoints_dir / run_name, use_gpu=job.use_gpu)
        with bar:
            train(job, ReportingSession(session, on_epoch))
            latest = session.store.latest()
            outcome = TrainOutcome(latest, ckpt.load_progress(latest))
            bar.close(epoch_summary(outcome.progress))
        return outcome

    import ray
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    init_ray(settings, verbose=verbose)
    # The controller puts each epoch's metrics here; a driver thread moves the bar while fit() blocks.
    # On the driver's node: a queue actor on a worker node would die with that node and, through the
    # controller's callback, end a training that Ray Train would otherwise resume (the lost-node test).
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    epochs = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
    storage = storage_args(settings.ray_storage, settings)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=job.to_dict(),
        scaling_config=scaling_config(workers, job.use_gpu, cpus_per_worker),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage.path,
            storage_filesystem=storage.filesystem,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            logging_config=console.train_logging_config(verbose),
            callbacks=[epoch_callback(epochs)],
        ),
    )
    try:
        with bar, _draining(epochs, on_epoch):
            result = trainer.fit()
    finally:
        epochs.shutdown()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name!r} finished without a checkpoint; see the Ray logs above"
                           + ("" if verbose else " (rerun with --verbose to see them here)"))
    directory = ckpt.local_directory(result.checkpoint, settings.checkpoints_dir / run_name)
    outcome = TrainOutcome(directory, ckpt.load_progress(directory))
    bar.close(epoch_summary(outcome.progress))
    return outcome


def trainer(*, workers: int, settings: Settings, max_failures: int = 2, verbose: bool = False,
            show_progress: bool = True):
    """``run_training`` as a ``lifecycle.train_and_register.Trainer`` (job, run name -> checkpoint folder):
    how ``train_and_register`` trains on Ray Train (``workers >= 1``) or in-process with a progress bar."""

    def run(job: TrainJob, run_name: str) -> Path:
        return run_training(job, workers=workers, run_name=run_name, settings=settings, max_failures=max_failures,
                            verbose=verbose, show_progress=show_progress).checkpoint_dir

    return run


class _draining:
    """While the block runs, a daemon thread hands what arrives on ``source`` (a Ray queue) to ``sink``;
    what is left when the block ends is handed over before it returns."""

    def __init__(self, source, sink: Callable[[dict], None]) -> None:
        self.source, self.sink = source, sink
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="train-progress", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.sink(self.source.get(timeout=0.5))
            except queue.Empty:
                continue
            except Exception:  # the queue actor is gone (Ray shut down): nothing more will come
                return

    def __enter__(self) -> _draining:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        try:
            for item in self.source.get_nowait_batch(self.source.qsize()):
                self.sink(item)
        except Exception:
            pass
