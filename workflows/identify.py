"""Identify the animals in new photos with a registered model (known individual or new).

    python workflows/identify.py --model reid-dve-tiger@production --images DIR|MANIFEST|s3://... \
        --gallery MANIFEST [--top-k 5] [--threshold T] [--out DIR]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid identify`
    sys.exit(app.main(["identify", *sys.argv[1:]]))
