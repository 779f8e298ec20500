"""Identify the animals in new photos with a registered model (known individual or new).

    python workflows/identify.py --model reid-dve-tiger@production --images DIR|MANIFEST|s3://... \
        --gallery MANIFEST [--top-k 5] [--threshold T] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli.identify import main  # noqa: E402
from reid_core.cli.options import run_command  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
