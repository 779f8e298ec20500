"""Tune PAW-ViT per species (the tune workflow with --method pawvit) with Ray Tune + Optuna, log to MLflow, register the best model.

    python workflows/tune_pawvit.py --species tiger --num-samples 8 --epochs 20
    python workflows/tune_pawvit.py --species yak --set parts.num_parts=4
    ray job submit --working-dir . -- python workflows/tune_pawvit.py --species tiger --use-gpu ...

The search space (parts.num_parts, losses.lambda_seg, losses.triplet_margin, losses.alpha, optim.lr) is
the method's; K is searched among the groupings of each species' part scheme (tiger 5, 4, 3; yak and
elephant 4, 3: reid_core/parts/schemes.py). The paper preset's K = 5 is the tiger's: other species
take a K they have for the checks before the sweep (--set parts.num_parts=4).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid tune --method pawvit`
    sys.exit(app.main(["tune", "--method", "pawvit", *sys.argv[1:]]))
