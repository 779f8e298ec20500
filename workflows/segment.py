"""Remove backgrounds from a whole manifest with Ray Data (resumable; local files or S3).

    python workflows/segment.py --manifest data/manifest.parquet --method sam+isnet --actors 2
    ray job submit --working-dir . -- python workflows/segment.py --manifest s3://bucket/m.parquet \
        --output s3://bucket/segmented --num-gpus 0.5 --actors 4 --batch-size 16
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid segment`
    sys.exit(app.main(["segment", *sys.argv[1:]]))
