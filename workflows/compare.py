"""Compare methods across species and seeds (AER Table 2), or run an ablation, as Ray tasks.

    python workflows/compare.py --methods dve,arbase --species tiger,yak --seeds 3 --preset cpu --epochs 20
    python workflows/compare.py --methods dve --species tiger --set losses.lambda_dve=0   # ablation
    ray job submit --working-dir . -- python workflows/compare.py --methods dve,arbase --manifest s3://...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid compare`
    sys.exit(app.main(["compare", *sys.argv[1:]]))
