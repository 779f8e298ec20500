"""Make PAW-ViT's pseudo part masks for a whole segmented manifest with Ray Data (resumable; local or S3).

    python workflows/part_masks.py --manifest data/atrw/segmented-sam-isnet/manifest.parquet
    python workflows/part_masks.py --manifest M --keypoints atrw_anno_reid_train/reid_keypoints_train.json \
        --keypoints atrw_anno_reid_test/reid_keypoints_test.json --scheme tiger --output data/atrw/parts
    ray job submit --working-dir . -- python workflows/part_masks.py --manifest s3://bucket/seg/manifest.parquet \
        --keypoints s3://bucket/pose/coco_keypoints.json --mapping s3://bucket/pose/mapping.json --actors 4
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid part-masks`
    sys.exit(app.main(["part-masks", *sys.argv[1:]]))
