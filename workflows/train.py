"""Train one model (DDP on Ray Train or in-process), evaluate on test, log and register it.

    python workflows/train.py --method dve --species tiger --workers 2 --epochs 20
    python workflows/train.py --method arbase --preset cpu --species tiger --set optim.lr=0.001
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid train`
    sys.exit(app.main(["train", *sys.argv[1:]]))
