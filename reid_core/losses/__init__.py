"""Losses written by hand because no library has them: circle, DVE, exp-log Dice + CE, label-smoothed CE
helpers.

Nothing here imports Ray or MLflow.
"""

from reid_core.losses.circle import CircleLoss, circle_loss, circle_loss_from_similarities, pair_similarities
from reid_core.losses.classification import UNKNOWN_SIDE, identity_loss, orientation_loss
from reid_core.losses.dve import dve_loss, grid_to_pixels
from reid_core.losses.exp_log import exp_log_loss

__all__ = [
    "UNKNOWN_SIDE",
    "CircleLoss",
    "circle_loss",
    "circle_loss_from_similarities",
    "dve_loss",
    "exp_log_loss",
    "grid_to_pixels",
    "identity_loss",
    "orientation_loss",
    "pair_similarities",
]
