"""ARBase's recipe in one place: the presets (``paper`` = the config's defaults, ``cpu``), the tuner's search
space and the learning-rate schedule."""

from __future__ import annotations

from reid_core.methods.arbase.config import ARBaseConfig
from reid_core.methods.contract import SearchParam
from reid_core.nn.schedules import LrCurve, cosine

# A CPU-sized ARBase for the synthetic species on 2 cores: random weights, 64 px, a narrow ResNet-18
# (BasicBlocks; IBN-a converts them the same way), 64-d heads, P x K = 8 x 4 and a higher Adam lr,
# 3e-3 as DVE's cpu preset (3.5e-4 is for ImageNet-initialised ResNet-50s; at 1e-3 the CE barely moved
# in 12 epochs on the synthetic tiger: 3.87 -> 3.59). No flip: synthetic entities are individual x
# side and a mirrored left flank is no right flank (the same finding as DVE's cpu preset).
CPU_PRESET = {
    "input": {"size": 64, "flip_p": 0.0},
    "backbone": {"name": "resnet18", "kwargs": {"channels": [32, 64, 128, 256]}, "pretrained": None,
                 "embed_dim": 64},
    "batch": {"ids_per_batch": 8, "images_per_id": 4},
    "optim": {"lr": 3e-3},
    "schedule": {"epochs": 30, "eta_min": 1e-6},
}
PRESETS = {"paper": {}, "cpu": CPU_PRESET}

SEARCH_SPACE = (
    SearchParam("optim.lr", "log", 1e-4, 3e-3),
    SearchParam("optim.weight_decay", "log", 1e-5, 1e-3),
    SearchParam("losses.triplet_margin", "float", 0.1, 0.6),
    SearchParam("losses.label_smoothing", "float", 0.0, 0.3),
    SearchParam("losses.triplet_weight", "choice", choices=(0.5, 1.0, 2.0)),
)


def lr_schedule(config: ARBaseConfig) -> LrCurve:
    """fast-reid's: linear warm-up, a constant delay, then cosine down to ``eta_min`` at ``schedule.epochs``."""
    s = config.schedule
    return cosine(cycle_epochs=max(1, s.epochs - s.warmup_epochs - s.delay_epochs),
                  min_factor=min(1.0, s.eta_min / config.optim.lr), warmup_epochs=s.warmup_epochs,
                  warmup_start=s.warmup_factor, warmup_prefix=True, delay_epochs=s.delay_epochs)
