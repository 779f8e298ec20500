"""Training state on disk: weights-only tensors plus a JSON history, written atomically.

One directory holds ``state.pt`` (model, optimiser, scheduler state; loaded with
``weights_only=True`` so no pickled code runs) and ``progress.json`` (stage, epoch, metric history).
Ray Train persists such a directory per report; in local mode (no workers) ``LocalCheckpoints``
keeps them itself, so reruns with the same run name resume there too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

STATE_FILE = "state.pt"
PROGRESS_FILE = "progress.json"


@dataclass
class Progress:
    stage: int = 0
    epoch: int = -1  # last completed epoch within ``stage``
    history: list[dict] = field(default_factory=list)  # one dict of metrics per completed epoch
    meta: dict = field(default_factory=dict)  # num_classes, label names, config: what rebuilding needs


def save(directory: str | Path, state: dict, progress: Progress) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / STATE_FILE)
    (directory / PROGRESS_FILE).write_text(json.dumps(asdict(progress)))


def load_progress(directory: str | Path) -> Progress:
    return Progress(**json.loads((Path(directory) / PROGRESS_FILE).read_text()))


def load_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(Path(directory) / STATE_FILE, map_location=map_location, weights_only=True)


class TrainingState(NamedTuple):
    progress: Progress
    state: dict


def load(directory: str | Path, map_location: str | torch.device = "cpu") -> TrainingState:
    return TrainingState(load_progress(directory), load_state(directory, map_location))


def load_ray(checkpoint, map_location: str | torch.device = "cpu") -> TrainingState | None:
    """Load a ``ray.train.Checkpoint`` in place when it is local (``to_directory`` would leave a copy
    in /tmp on every resume), through a temporary download otherwise."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return load(directory, map_location)


def local_directory(checkpoint, download_root: str | Path) -> Path:
    """A local directory holding a ``ray.train.Checkpoint``: its own path on a local filesystem, else a
    download under ``download_root`` (remote storage such as S3)."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return Path(checkpoint.path)
    return Path(checkpoint.to_directory(str(Path(download_root) / Path(checkpoint.path).name)))


class LocalCheckpoints:
    """``root/epoch_XXXXXX`` directories; a checkpoint appears only once complete (rename is atomic)."""

    def __init__(self, root: str | Path, keep: int = 2) -> None:
        self.root = Path(root)
        self.keep = keep

    def _all(self) -> list[Path]:
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("ckpt_"))

    def latest(self) -> Path | None:
        found = self._all()
        return found[-1] if found else None

    def save(self, state: dict, progress: Progress) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"ckpt_{progress.stage:02d}_{progress.epoch:06d}"
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".partial-"))
        save(tmp, state, progress)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in self._all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final
