"""Detect and crop every animal in whole photos with Ray Data (resumable; local files or S3).

    python workflows/detect.py --manifest data/whole/manifest.parquet --method reference
    ray job submit --working-dir . -- python workflows/detect.py --manifest s3://bucket/photos.parquet \
        --output s3://bucket/detected --set weights=s3://bucket/models/MDV6-rtdetr_x.pth --num-gpus 0.5 --actors 2
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid detect`
    sys.exit(app.main(["detect", *sys.argv[1:]]))
