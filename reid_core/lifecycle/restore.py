"""Rebuild a trained network from a checkpoint directory written by the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reid_core.data import files as rio
from reid_core.engine import checkpoint as ckpt
from reid_core.engine.ray_storage import download, subdirectories
from reid_core.methods.contract import Method
from reid_core.methods.registry import get_method


@dataclass
class Restored:
    method: Method
    config: Any
    model: nn.Module
    progress: ckpt.Progress


def latest_checkpoint(run_dir: str | Path, download_root: str | Path | None = None) -> Path:
    """The newest complete checkpoint (a folder with its progress file; hidden ones are being written)
    under a Ray Train run directory or a local checkpoint store. Under an s3:// run directory it is
    downloaded to ``download_root/<its name>`` first: the rest of the code reads local folders."""
    run_dir = str(run_dir)
    names = [name for name in subdirectories(run_dir) if not name.startswith(".")]
    complete = [name for name in names if rio.exists(rio.join(run_dir, name, ckpt.PROGRESS_FILE))]
    if not complete:
        raise FileNotFoundError(f"no checkpoint under {run_dir}: did the training run finish an epoch?")
    latest = rio.join(run_dir, complete[-1])
    if not rio.is_s3(run_dir):
        return Path(latest)
    if download_root is None:
        raise ValueError(f"{latest} is on S3: pass download_root, a local folder to copy it to")
    return Path(download(latest, str(Path(download_root) / complete[-1])))


def restore(checkpoint_dir: str | Path, device: str | torch.device = "cpu") -> Restored:
    progress = ckpt.load_progress(checkpoint_dir)
    meta = progress.meta
    method = get_method(meta["method"])
    # The checkpoint holds every weight: never fetch pretrained ones again just to rebuild the network.
    config = method.offline(method.load_config(meta["config"]))
    model = method.build(config, num_classes=meta["num_classes"])
    state = ckpt.load_state(checkpoint_dir, map_location=device)
    # The best epoch on validation mAP when validation ran, else the last.
    model.load_state_dict(state.get("best") or state["model"])
    return Restored(method, config, model.to(device).eval(), progress)
