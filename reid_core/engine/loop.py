"""The training function every Ray Train worker runs (DDP: gloo on CPU, NCCL on GPU), or the driver
in-process (a Tune trial, or local without Ray): see ``session``.

Generic over methods: it reads nothing of a method's config, only the contract (``methods.contract``).
Contract with Ray Train V2: every rank reports once per epoch (only rank 0 attaches a checkpoint),
so no rank waits forever; a rerun with the same run name resumes from the latest checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import polars as pl
import torch
from torch.utils.data import DataLoader

from reid_core.data import manifest
from reid_core.data.dataset import ImageRows, ManifestDataset, check_label_map_frames, select_images
from reid_core.engine import checkpoint as ckpt
from reid_core.engine.batches import check_batches, make_sampler
from reid_core.engine.evaluate import evaluate_split
from reid_core.engine.session import Session
from reid_core.methods.config import MethodConfig
from reid_core.methods.contract import Method, StageContext
from reid_core.methods.registry import get_method

SELECTION_METRIC = "val.mAP"  # the checkpoint kept for the registry is the best on it


@dataclass
class TrainJob:
    """Everything a worker needs; plain values so Ray can ship it as the train loop config."""

    manifest: str
    species: str
    method: str = "dve"
    preset: str = "paper"
    overrides: dict = field(default_factory=dict)  # dotted config keys: {"optim.lr": 3e-3}
    seed: int = 0
    use_masked: bool = True
    eval_every: int = 1  # epochs between validation evaluations (the last epoch always evaluates)
    eval_batch_size: int = 64
    loader_workers: int = 0
    use_gpu: bool = False
    cache_images: bool = False  # keep decoded training images in memory (small datasets only)

    def to_dict(self) -> dict:
        return asdict(self)

    def method_and_config(self) -> tuple[Method, MethodConfig]:
        method = get_method(self.method)
        return method, method.config(self.preset, self.overrides)


def load_species_rows(manifest_uri: str, species: str) -> pl.DataFrame:
    df = manifest.read(manifest_uri)
    rows = df.filter(pl.col("species") == species)
    if rows.is_empty():
        known = ", ".join(sorted(df["species"].unique().to_list()))
        raise ValueError(f"manifest {manifest_uri} has no rows of species {species!r}; it has: {known} "
                         "(pass one with --species)")
    return rows


def training_images(method: Method, config: MethodConfig, rows: pl.DataFrame, use_masked: bool,
                    source: str = "the manifest") -> ImageRows:
    """The training split as the method trains on it: masked images only (failed rows left out), rows
    with every label map the method reads (the others left out), then the method's training view."""
    images = select_images(rows.filter(pl.col("split") == "train"), use_masked)
    kept = images.rows.drop_nulls(list(method.mask_columns.values()))
    check_label_map_frames(ImageRows(kept, images.column), method.mask_columns, source)
    left_out = images.left_out + images.rows.height - kept.height
    return ImageRows(method.training_view(kept, config), images.column, left_out)


def check_job(job: TrainJob, rows: pl.DataFrame, workers: int = 1) -> ImageRows:
    """Driver-side checks before anything is launched: config, columns, batches against the data."""
    method, config = job.method_and_config()
    missing = [c for c in (*method.required_columns, *method.mask_columns.values()) if c not in rows.columns]
    if missing:
        raise ValueError(f"method {job.method!r} needs manifest column(s) {missing}, which {job.manifest} lacks")
    images = training_images(method, config, rows, job.use_masked, job.manifest)
    if images.rows.is_empty():
        raise ValueError(f"{job.manifest} has no usable 'train' rows of species {job.species!r}")
    check_batches(method.plan(config), images.rows, workers, where=f"{job.method} on {job.species}: ")
    return images


def _autocast(precision: str, device: torch.device):
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(job: TrainJob, session: Session) -> ckpt.Progress:
    """Train ``job`` in ``session``; returns the progress (history of per-epoch metrics) on rank 0."""
    rank, world, device = session.rank, session.world_size, session.device
    torch.manual_seed(job.seed)
    method, config = job.method_and_config()

    rows = load_species_rows(job.manifest, job.species)
    images = training_images(method, config, rows, job.use_masked, job.manifest)
    if rank == 0 and job.use_masked and images.column != "masked_uri":
        # Not an error (a dataset may have no masks yet), but say so: with backgrounds that follow the
        # individuals (camera sites, the synthetic species' home scenes) a network learns the scene.
        warnings.warn(f"use_masked=True but the {job.species!r} training rows have no 'masked_uri': "
                      "training on the original images (image_uri), backgrounds included", stacklevel=2)
    val_rows = rows.filter(pl.col("split") == "val")
    left_out = images.left_out + select_images(val_rows, job.use_masked).left_out
    if rank == 0 and left_out:
        label_maps = f" or no {'/'.join(method.mask_columns.values())}" if method.mask_columns else ""
        warnings.warn(f"{left_out} {job.species!r} train/val rows have no masked image (their segmentation "
                      f"failed){label_maps}: left out of training and validation", stacklevel=2)
    dataset = ManifestDataset(images.rows, method.train_transform(config), column=images.column,
                              masks=method.mask_columns, cache=job.cache_images)
    num_classes = len(dataset.label_names)
    plans = method.plan(config)
    samplers = [make_sampler(plan.batches, dataset.labels, num_replicas=world, rank=rank, seed=job.seed)
                for plan in plans]
    network = session.to_device(method.build(config, num_classes=num_classes))
    stages = method.stages(config, network, [len(s) for s in samplers])

    progress = ckpt.Progress(meta={"num_classes": num_classes, "method": job.method, "preset": job.preset,
                                   "config": config.model_dump(mode="json"), "species": job.species,
                                   "left_out_unmasked": left_out})
    state, best = None, None
    restored = session.restore(device)
    if restored:
        progress, state = restored
        network.load_state_dict(state["model"])
        best = state.get("best")
    context = StageContext(rows=images.rows, device=device, rank=rank, world_size=world, num_classes=num_classes,
                           image_column=images.column)
    epochs_before = tuned_before = 0

    for stage_index, (stage, sampler) in enumerate(zip(stages, samplers, strict=True)):
        plan = stage.plan
        if stage_index < progress.stage:
            epochs_before += plan.epochs
            tuned_before += plan.epochs if plan.tuned else 0
            continue
        if stage.trainable:
            stage.trainable(network)
        if stage.on_start:
            stage.on_start(network, context)  # also after a resume into this stage
        model = session.wrap(network)  # after ``trainable``: DDP tracks exactly what this stage trains
        data = stage.dataset(context) if stage.dataset else dataset
        loader = session.prepare_loader(DataLoader(data, batch_sampler=sampler, num_workers=job.loader_workers,
                                                   persistent_workers=job.loader_workers > 0))
        optimizer = stage.optimizer(model)
        scheduler = stage.scheduler(optimizer) if stage.scheduler else None
        start_epoch = 0
        if state is not None and stage_index == progress.stage:
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler"):
                scheduler.load_state_dict(state["scheduler"])
            start_epoch = progress.epoch + 1
        # A stage the tuner does not count leaves the test embedding as it is (``StagePlan.tuned``): its
        # validation scores are those at its start, sent with every epoch, since Tune and Optuna read the
        # searched metric in every result. Only tuned epochs select the best checkpoint.
        frozen_scores = {}
        if not plan.tuned and start_epoch < plan.epochs and rank == 0 and not val_rows.is_empty():
            frozen_scores = validation_scores(job, method, config, network, val_rows, device)

        for epoch in range(start_epoch, plan.epochs):
            started = time.perf_counter()
            sampler.set_epoch(epochs_before + epoch)
            if stage.on_epoch_start:
                stage.on_epoch_start(model, epoch)
            model.train()
            sums: dict[str, float] = defaultdict(float)
            n_batches = n_images = 0
            for batch in loader:
                batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                with _autocast(stage.precision, device):
                    loss, parts = stage.step(model, batch, epoch)
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(
                        f"loss became {loss.item()} in stage {plan.name!r} epoch {epoch}: lower the learning "
                        "rate or the loss weights")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sums["loss"] += float(loss.detach())
                for key, value in parts.items():
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
            last = epoch == plan.epochs - 1 and stage_index == len(stages) - 1
            if plan.tuned:
                metrics["tuned_epoch"] = tuned_before + epoch + 1
            metrics |= frozen_scores
            evaluate = plan.tuned and ((global_epoch + 1) % job.eval_every == 0 or last)
            if rank == 0 and not val_rows.is_empty() and evaluate:
                metrics |= validation_scores(job, method, config, network, val_rows, device)
                if best is None or metrics[SELECTION_METRIC] > progress.meta.get("best", {}).get("score", -1.0):
                    best = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
                    progress.meta["best"] = {"score": metrics[SELECTION_METRIC], "epoch": global_epoch}

            progress.stage, progress.epoch = stage_index, epoch
            snapshot = None  # only rank 0 checkpoints
            if rank == 0:
                progress.history.append(metrics)
                snapshot = {"model": network.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict() if scheduler is not None else {},
                            **({"best": best} if best is not None else {})}
            session.report(metrics, snapshot, progress)
        state = None  # the restored optimiser state belonged to this stage only
        epochs_before += plan.epochs
        tuned_before += plan.epochs if plan.tuned else 0
    if epochs_before == 0 and restored is None:
        report_untrained(job, method, config, network, val_rows, session, progress)
    return progress


def validation_scores(job: TrainJob, method: Method, config: MethodConfig, network: torch.nn.Module,
                      val_rows: pl.DataFrame, device: torch.device) -> dict[str, float]:
    """``val.*`` metrics of the unwrapped network (a DDP forward on rank 0 alone could start a collective)."""
    scores = evaluate_split(method, network, val_rows, method.eval_transform(config), "val", config=config,
                            use_masked=job.use_masked, batch_size=job.eval_batch_size, device=device)
    return {f"val.{k}": v for k, v in scores.items()}


def report_untrained(job: TrainJob, method: Method, config: MethodConfig, network: torch.nn.Module,
                     val_rows: pl.DataFrame, session: Session, progress: ckpt.Progress) -> None:
    """A method with nothing to train (no epoch planned, e.g. a zero-shot baseline): one report of the
    network as built, with its validation scores, so it has a checkpoint to test and publish like any run."""
    metrics: dict = {"epoch": 0, "stage": 0}
    snapshot = None
    if session.rank == 0:
        if not val_rows.is_empty():
            metrics |= validation_scores(job, method, config, network, val_rows, session.device)
            progress.meta["best"] = {"score": metrics[SELECTION_METRIC], "epoch": 0}
        progress.epoch = 0
        progress.history.append(metrics)
        snapshot = {"model": network.state_dict()}
    session.report(metrics, snapshot, progress)


def train_worker(config: dict) -> None:
    """The Ray Train entry point (``TorchTrainer(train_worker, train_loop_config=job.to_dict())``)."""
    from reid_core.engine.session import RayTrainSession

    train(TrainJob(**config), RayTrainSession())
