"""Tune any registered method per species with Ray Tune + Optuna, log to MLflow, register the best model.

    python workflows/tune.py --method arcface --preset cpu --species tiger --num-samples 4
    ray job submit --working-dir . -- python workflows/tune.py --method vit --species tiger ...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli.options import run_command  # noqa: E402
from reid_core.cli.tune import main_with_method  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command(main_with_method, sys.argv[1:]))
