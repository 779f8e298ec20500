"""Rebuild a trained network from a checkpoint directory written by the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reid_core.engine import checkpoint as ckpt
from reid_core.methods.contract import Method
from reid_core.methods.registry import get_method


@dataclass
class Restored:
    method: Method
    config: Any
    model: nn.Module
    progress: ckpt.Progress


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest complete checkpoint under a Ray Train run directory or a local checkpoint store."""
    run_dir = Path(run_dir)
    found = sorted(p.parent for p in run_dir.glob("*/" + ckpt.PROGRESS_FILE) if not p.parent.name.startswith("."))
    if not found:
        raise FileNotFoundError(f"no checkpoint under {run_dir}: did the training run finish an epoch?")
    return found[-1]


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
