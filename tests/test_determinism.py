"""docs/tuning.md: "one training on CPU with a given seed and config repeats bit for bit". Trained twice in
process: the same weights, optimiser and scheduler state, and metrics; only the wall-clock figures differ.
A third run with another seed differs, so the comparison can see a difference."""

from __future__ import annotations

import torch
from conftest import TINY_DVE, TINY_PRESET

from reid_core.engine import checkpoint as ckpt
from reid_core.engine.loop import TrainJob, train
from reid_core.engine.session import LocalSession

WALL_CLOCK = ("train.images_per_s", "train.epoch_s")


def _train(manifest: str, seed: int, directory) -> tuple[list[dict], dict]:
    job = TrainJob(manifest=manifest, species="tiger", preset=TINY_PRESET, use_masked=False,
                   overrides={**TINY_DVE, "schedule.epochs": 2}, seed=seed)
    session = LocalSession(directory)
    progress = train(job, session)
    history = [{k: v for k, v in h.items() if k not in WALL_CLOCK} for h in progress.history]
    return history, ckpt.load_state(session.store.latest())


def _leaves(tree, path: str = ""):
    """(path, value) of every leaf of nested dicts and lists (a state dict, an optimiser state)."""
    if isinstance(tree, dict):
        for key in sorted(tree, key=str):
            yield from _leaves(tree[key], f"{path}/{key}")
    elif isinstance(tree, list | tuple):
        for i, value in enumerate(tree):
            yield from _leaves(value, f"{path}/{i}")
    else:
        yield path, tree


def _identical(a, b) -> bool:
    return torch.equal(a, b) if torch.is_tensor(a) and torch.is_tensor(b) else a == b


def test_a_cpu_training_repeats_bit_for_bit(tiny_synthetic, tmp_path, single_torch_thread):
    first_history, first = _train(tiny_synthetic, 5, tmp_path / "first")
    second_history, second = _train(tiny_synthetic, 5, tmp_path / "second")

    assert len(first_history) == 2 and all("val.mAP" in h and "train.loss" in h for h in first_history)
    assert second_history == first_history
    first_leaves, second_leaves = list(_leaves(first)), list(_leaves(second))
    assert [p for p, _ in first_leaves] == [p for p, _ in second_leaves]
    assert sum(torch.is_tensor(v) for _, v in first_leaves) > 100  # weights and optimiser moments, not just a few
    differing = [p for (p, a), (_, b) in zip(first_leaves, second_leaves, strict=True) if not _identical(a, b)]
    assert differing == []

    other_history, other = _train(tiny_synthetic, 6, tmp_path / "other")
    assert not all(torch.equal(first["model"][k], other["model"][k]) for k in first["model"])
    assert other_history != first_history
