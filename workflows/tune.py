"""Tune any registered method per species with Ray Tune + Optuna, log to MLflow, register the best model.

    python workflows/tune.py --method arcface --preset cpu --species tiger --num-samples 4
    ray job submit --working-dir . -- python workflows/tune.py --method vit --species tiger ...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid tune`
    sys.exit(app.main(["tune", *sys.argv[1:]]))
