"""Batch samplers from a stage's ``BatchSpec``, and the check of a method's batches against the data that
the driver runs before launching anything (so a bad P x K fails in a second, not inside every trial)."""

from __future__ import annotations

import polars as pl
from torch.utils.data import Sampler

from reid_core.data.sampler import PKBatchSampler, RandomBatchSampler
from reid_core.methods.contract import BatchSpec, StagePlan


class BatchError(ValueError):
    """The data cannot fill a stage's batches; the message names the config keys to change."""


def make_sampler(spec: BatchSpec, labels, *, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> Sampler:
    if spec.kind == "pk":
        return PKBatchSampler(labels, spec.ids_per_batch, spec.images_per_id, num_replicas=num_replicas,
                              rank=rank, seed=seed)
    return RandomBatchSampler(len(labels), spec.batch_size, num_replicas=num_replicas, rank=rank, seed=seed)


def _flags(plan: StagePlan) -> str:
    keys = plan.batch_keys or ("<the batch keys of this method>",)
    return " / ".join(f"--set {key}=N" for key in keys)


def check_batches(plans: list[StagePlan], train_rows: pl.DataFrame, workers: int = 1, *, where: str = "") -> None:
    """Raise ``BatchError`` when some stage's batches cannot be filled from ``train_rows``."""
    identities = train_rows["entity"].n_unique() if train_rows.height else 0
    ranks = max(1, workers)
    for plan in plans:
        spec = plan.batches
        if spec.kind == "pk" and identities < spec.ids_per_batch:
            raise BatchError(
                f"{where}stage {plan.name!r} needs P={spec.ids_per_batch} identities per batch but the training "
                f"split has {identities}. Fix: lower P to at most {identities} ({_flags(plan)}), or train on "
                "more identities.")
        if spec.kind == "pk":
            try:
                make_sampler(spec, train_rows["entity"].to_list(), num_replicas=ranks)
            except ValueError as err:
                raise BatchError(f"{where}stage {plan.name!r}: {err} ({_flags(plan)})") from None
        elif train_rows.height // spec.batch_size < ranks:
            raise BatchError(
                f"{where}stage {plan.name!r}: {train_rows.height} training images make "
                f"{train_rows.height // spec.batch_size} batches of {spec.batch_size}, fewer than the {ranks} "
                f"workers. Fix: a smaller batch ({_flags(plan)}) or fewer workers.")
