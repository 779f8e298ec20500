"""The training function every Ray Train worker runs (DDP: gloo on CPU, NCCL on GPU), or the driver
in-process (a Tune trial, or local without Ray): see ``session``.

Contract with Ray Train V2: every rank reports once per epoch (only rank 0 attaches a checkpoint),
so no rank waits forever; a rerun with the same run name resumes from the latest checkpoint.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import polars as pl
import torch
from torch.utils.data import DataLoader

from reid_core.data import manifest
from reid_core.data.dataset import ManifestDataset, image_column
from reid_core.data.sampler import PKBatchSampler
from reid_core.engine import checkpoint as ckpt
from reid_core.engine.evaluate import evaluate_split
from reid_core.engine.session import Session
from reid_core.models.registry import get_method


@dataclass
class TrainJob:
    """Everything a worker needs; plain values so Ray can ship it as the train loop config."""

    manifest: str
    species: str
    method: str = "dve"
    overrides: dict = field(default_factory=dict)  # method config fields (epochs, lr, backbone, ...)
    seed: int = 0
    use_masked: bool = True
    eval_every: int = 1  # epochs between validation evaluations (the last epoch always evaluates)
    eval_batch_size: int = 64
    loader_workers: int = 0
    use_gpu: bool = False
    cache_images: bool = False  # keep decoded training images in memory (small datasets only)

    def to_dict(self) -> dict:
        return asdict(self)


def load_species_rows(manifest_uri: str, species: str) -> pl.DataFrame:
    df = manifest.read(manifest_uri)
    rows = df.filter(pl.col("species") == species)
    if rows.is_empty():
        known = ", ".join(sorted(df["species"].unique().to_list()))
        raise ValueError(f"manifest {manifest_uri} has no rows of species {species!r}; it has: {known}")
    return rows


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def train(job: TrainJob, session: Session) -> ckpt.Progress:
    """Train ``job`` in ``session``; returns the progress (history of per-epoch metrics) on rank 0."""
    rank, world, device = session.rank, session.world_size, session.device
    torch.manual_seed(job.seed)

    rows = load_species_rows(job.manifest, job.species)
    train_rows = rows.filter(pl.col("split") == "train")
    val_rows = rows.filter(pl.col("split") == "val")
    method = get_method(job.method)
    config_obj = method.default_config(**job.overrides)

    column = image_column(train_rows, job.use_masked)
    if job.use_masked and column != "masked_uri" and rank == 0:
        # Not an error (a dataset may have no masks yet), but say so: with backgrounds that follow the
        # individuals (camera sites, the synthetic species' home scenes) a network learns the scene.
        warnings.warn(
            f"use_masked=True but the {job.species!r} training rows have no complete 'masked_uri' column: "
            "training on the original images (image_uri), backgrounds included", stacklevel=2)
    dataset = ManifestDataset(train_rows, method.train_transform(config_obj), column=column,
                              cache=job.cache_images)
    sampler = PKBatchSampler(dataset.labels, config_obj.ids_per_batch, config_obj.images_per_id,
                             num_replicas=world, rank=rank, seed=job.seed)
    loader = session.prepare_loader(DataLoader(dataset, batch_sampler=sampler, num_workers=job.loader_workers,
                                               persistent_workers=job.loader_workers > 0))
    model = session.prepare_model(method.build(config_obj, num_classes=len(dataset.label_names)))
    stages = method.stages(config_obj, model, len(sampler))

    progress = ckpt.Progress(meta={"num_classes": len(dataset.label_names), "method": job.method,
                                   "config": asdict(config_obj), "species": job.species})
    state = None
    restored = session.restore(device)
    if restored:
        progress, state = restored
        unwrap(model).load_state_dict(state["model"])
    eval_transform = method.eval_transform(config_obj)
    epochs_before = 0

    for stage_index, stage in enumerate(stages):
        if stage_index < progress.stage:
            epochs_before += stage.epochs
            continue
        optimizer = stage.optimizer(model)
        scheduler = stage.scheduler(optimizer) if stage.scheduler else None
        start_epoch = 0
        if state is not None and stage_index == progress.stage:
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler"):
                scheduler.load_state_dict(state["scheduler"])
            start_epoch = progress.epoch + 1

        for epoch in range(start_epoch, stage.epochs):
            started = time.perf_counter()
            sampler.set_epoch(epochs_before + epoch)
            if stage.on_epoch_start:
                stage.on_epoch_start(model, epoch)
            model.train()
            sums: dict[str, float] = defaultdict(float)
            n_batches = n_images = 0
            for batch in loader:
                batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                loss, logs = stage.step(model, batch, epoch)
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(
                        f"loss became {loss.item()} in stage {stage.name!r} epoch {epoch}: lower the learning "
                        "rate or the loss weights")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for key, value in logs.items():
                    sums[key] += float(value)
                n_batches += 1
                n_images += len(batch["label"])
            if scheduler is not None:
                scheduler.step()
            seconds = time.perf_counter() - started
            global_epoch = epochs_before + epoch
            metrics = {f"train.{k}": v / max(n_batches, 1) for k, v in sums.items()}
            metrics |= {"epoch": global_epoch, "stage": stage_index,
                        "train.images_per_s": n_images * world / seconds, "train.epoch_s": seconds}
            last = epoch == stage.epochs - 1 and stage_index == len(stages) - 1
            if rank == 0 and not val_rows.is_empty() and ((global_epoch + 1) % job.eval_every == 0 or last):
                # The unwrapped module: a DDP forward on rank 0 alone could start a collective.
                val = evaluate_split(method, unwrap(model), val_rows, eval_transform, "val",
                                     use_masked=job.use_masked, batch_size=job.eval_batch_size, device=device)
                metrics |= {f"val.{k}": v for k, v in val.items()}

            progress.stage, progress.epoch = stage_index, epoch
            snapshot = None  # only rank 0 checkpoints
            if rank == 0:
                progress.history.append(metrics)
                snapshot = {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict() if scheduler is not None else {}}
            session.report(metrics, snapshot, progress)
        state = None  # the restored optimiser state belonged to this stage only
        epochs_before += stage.epochs
    return progress


def train_worker(config: dict) -> None:
    """The Ray Train entry point (``TorchTrainer(train_worker, train_loop_config=job.to_dict())``)."""
    from reid_core.engine.session import RayTrainSession

    train(TrainJob(**config), RayTrainSession())
