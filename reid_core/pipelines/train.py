"""Run one training job: in-process (``workers=0``) or DDP on Ray Train (``workers>=1``).

Either way a rerun with the same ``run_name`` resumes from the last checkpoint: Ray Train keeps them
under ``<ray storage>/<run_name>``; in-process runs under ``<checkpoints>/<run_name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reid_core.engine import checkpoint as ckpt
from reid_core.engine.loop import TrainJob, train, train_worker
from reid_core.engine.session import LocalSession
from reid_core.pipelines.ray_runtime import init_ray
from reid_core.settings import Settings


@dataclass
class TrainOutcome:
    checkpoint_dir: Path
    progress: ckpt.Progress


def scaling_config(workers: int, use_gpu: bool, cpus_per_worker: float = 1.0):
    from ray.train import ScalingConfig

    resources = {"GPU": 1} if use_gpu else {"CPU": cpus_per_worker}
    return ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources)


def run_training(
    job: TrainJob,
    *,
    workers: int,
    run_name: str,
    settings: Settings,
    max_failures: int = 2,
    cpus_per_worker: float = 1.0,
) -> TrainOutcome:
    if workers == 0:
        session = LocalSession(settings.checkpoints_dir / run_name, use_gpu=job.use_gpu)
        train(job, session)
        latest = session.store.latest()
        return TrainOutcome(latest, ckpt.load_progress(latest))

    import ray.train
    from ray.train.torch import TorchTrainer

    init_ray(settings)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=job.to_dict(),
        scaling_config=scaling_config(workers, job.use_gpu, cpus_per_worker),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=str(settings.ray_storage),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name!r} finished without a checkpoint; see the Ray logs above")
    directory = ckpt.local_directory(result.checkpoint, settings.checkpoints_dir / run_name)
    return TrainOutcome(directory, ckpt.load_progress(directory))

