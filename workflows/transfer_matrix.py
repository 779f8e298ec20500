"""Cross-species transfer matrix (AER Table A.5) from the registry, as Ray tasks, logged to MLflow.

    python workflows/transfer_matrix.py --method dve --species tiger,yak,elephant
    python workflows/transfer_matrix.py --method dve --model tiger=7 --model yak=@candidate --test-species tiger,yak
    ray job submit --working-dir . -- python workflows/transfer_matrix.py --method dve --manifest s3://...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid transfer`
    sys.exit(app.main(["transfer", *sys.argv[1:]]))
