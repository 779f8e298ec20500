"""The main job on the embedded default: synthetic species into REID_HOME, baselines, background
removal, and a DVE sweep per species with the best model registered in MLflow.

    make demo            # or: python workflows/demo.py [--no-tune]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid demo`
    sys.exit(app.main(["demo", *sys.argv[1:]]))
