"""Tune DVE (AER) per species (the tune workflow with --method dve) with Ray Tune + Optuna, log to MLflow, register the best model.

    python workflows/tune_dve.py --species tiger,yak --num-samples 8 --epochs 20
    ray job submit --working-dir . -- python workflows/tune_dve.py --species tiger ...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid tune --method dve`
    sys.exit(app.main(["tune", "--method", "dve", *sys.argv[1:]]))
