"""Where a training loop runs: a Ray Train worker, an in-process Tune trial, or plain local.

The loop calls only this interface. Ray Train V2's own local mode (``num_workers=0``) neither
persists checkpoints nor accepts ``ray.train.report`` inside a Tune trial, so in-process runs use
``TuneTrialSession`` (under Tune) or ``LocalSession`` (our own checkpoint directory) instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from reid_core.engine import checkpoint as ckpt


class Session(Protocol):
    rank: int
    world_size: int
    device: torch.device

    def to_device(self, network: nn.Module) -> nn.Module:
        """The network on this session's device (once, before any stage)."""

    def wrap(self, network: nn.Module) -> nn.Module:
        """The network as a stage trains it (DDP across workers over the parameters that require grad)."""

    def prepare_loader(self, loader: DataLoader) -> DataLoader: ...

    def restore(self, map_location: torch.device) -> ckpt.TrainingState | None:
        """The checkpoint to resume from, or None for a fresh start."""

    def report(self, metrics: dict, state: dict | None, progress: ckpt.Progress) -> None:
        """Called once per epoch on every rank; ``state`` is given on rank 0 only."""


def default_device(use_gpu: bool) -> torch.device:
    return torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")


class _InProcess:
    rank, world_size = 0, 1

    def __init__(self, use_gpu: bool = False) -> None:
        self.device = default_device(use_gpu)

    def to_device(self, network: nn.Module) -> nn.Module:
        return network.to(self.device)

    def wrap(self, network: nn.Module) -> nn.Module:
        return network

    def prepare_loader(self, loader: DataLoader) -> DataLoader:
        return loader


class LocalSession(_InProcess):
    """No Ray at all: checkpoints under ``directory``; rerunning resumes from the latest."""

    def __init__(self, directory: str | Path, use_gpu: bool = False) -> None:
        super().__init__(use_gpu)
        self.store = ckpt.LocalCheckpoints(directory)
        self.last_checkpoint: Path | None = None

    def restore(self, map_location: torch.device) -> ckpt.TrainingState | None:
        latest = self.store.latest()
        return ckpt.load(latest, map_location) if latest else None

    def report(self, metrics: dict, state: dict | None, progress: ckpt.Progress) -> None:
        self.last_checkpoint = self.store.save(state, progress)


class TuneTrialSession(_InProcess):
    """An in-process Tune trial: metrics and checkpoints go to Tune, which persists and resumes them."""

    def restore(self, map_location: torch.device) -> ckpt.TrainingState | None:
        import ray.tune

        return ckpt.load_ray(ray.tune.get_checkpoint(), map_location)

    def report(self, metrics: dict, state: dict | None, progress: ckpt.Progress) -> None:
        import ray.tune

        with tempfile.TemporaryDirectory() as directory:
            ckpt.save(directory, state, progress)
            ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(directory))


class RayTrainSession:
    """A Ray Train worker (DDP across workers; gloo on CPU, NCCL on GPU)."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()

    def to_device(self, network: nn.Module) -> nn.Module:
        return network.to(self.device)

    def wrap(self, network: nn.Module) -> nn.Module:
        import ray.train.torch

        # A new DDP per stage: DDP registers the parameters that require grad when it is built, so a
        # stage that freezes part of the network needs no find_unused_parameters.
        return ray.train.torch.prepare_model(network, move_to_device=False)

    def prepare_loader(self, loader: DataLoader) -> DataLoader:
        import ray.train.torch

        # The P x K sampler already splits batches across ranks; a DistributedSampler would break them.
        return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False)

    def restore(self, map_location: torch.device) -> ckpt.TrainingState | None:
        import ray.train

        return ckpt.load_ray(ray.train.get_checkpoint(), map_location)

    def report(self, metrics: dict, state: dict | None, progress: ckpt.Progress) -> None:
        import ray.train

        if state is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            ckpt.save(directory, state, progress)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
