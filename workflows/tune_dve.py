"""Tune DVE (AER) per species (the tune workflow with --method dve) with Ray Tune + Optuna, log to MLflow, register the best model.

    python workflows/tune_dve.py --species tiger,yak --num-samples 8 --epochs 20
    ray job submit --working-dir . -- python workflows/tune_dve.py --species tiger ...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli.options import run_command  # noqa: E402
from reid_core.cli.tune import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command(lambda argv: main("dve", argv), sys.argv[1:]))
