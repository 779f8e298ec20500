"""A paper's claim as a comparison over seeds, ours beside the paper's reported numbers.

    python workflows/reproduce.py aer-lambda-dve                  # cpu preset, synthetic species, 3 seeds
    ray job submit --working-dir . -- python workflows/reproduce.py aer-lambda-dve --preset paper \
        --manifest s3://bucket/atrw/segmented/manifest.parquet --use-gpu
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid reproduce`
    sys.exit(app.main(["reproduce", *sys.argv[1:]]))
