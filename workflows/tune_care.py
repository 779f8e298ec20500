"""Tune CARE per species (the tune workflow with --method care) with Ray Tune + Optuna, log to MLflow, register the best model.

The tuner counts and reports phase 2 (the image encoder's fine-tuning) only; --epochs sets its length.

    python workflows/tune_care.py --species tiger --preset cpu --num-samples 8 --epochs 20
    ray job submit --working-dir . -- python workflows/tune_care.py --species tiger ...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid tune --method care`
    sys.exit(app.main(["tune", "--method", "care", *sys.argv[1:]]))
