"""Tune CARE per species (the tune workflow with --method care) with Ray Tune + Optuna, log to MLflow, register the best model.

The tuner counts and reports phase 2 (the image encoder's fine-tuning) only; --epochs sets its length.

    python workflows/tune_care.py --species tiger --preset cpu --num-samples 8 --epochs 20
    ray job submit --working-dir . -- python workflows/tune_care.py --species tiger ...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli.options import run_command  # noqa: E402
from reid_core.cli.tune import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command(lambda argv: main("care", argv), sys.argv[1:]))
