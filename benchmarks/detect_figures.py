"""Detection figures on synthetic whole photos, per seed; prints one JSON object.

    synthetic tiger (dataset + whole photos of its test individuals, 0-3 animals each)
      --reid detect (a detector)--> crops --> recall / precision at IoU 0.5 against the exact boxes
      single-animal photos: identification top-1 by local-feature matching (SIFT, identify's second
      opinion; needs no trained model) against a gallery of the test individuals' background-free images,
      the query being (a) the whole photo, (b) the detector's crop, (c) the crop, background removed with
      its reference mask (detect -> segment)
      --sam (optional)--> SAM mask IoU against the reference masks of the crops, automatic proposals vs the
      detector's box as the prompt (``--sam-checkpoint``/``--sam-model``; ``tiny``: random weights)

The ``reference`` detector reads the exact boxes, so its recall and precision check the stage's
bookkeeping (clipping, crops, thresholds), not a model; ``--method megadetector`` with real weights
measures MegaDetector on drawn animals (a domain it was not trained on).

    python benchmarks/detect_figures.py [--seed 1] [--photos 40] [--individuals 24] [--method reference]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--photos", type=int, default=40, help="whole photos")
    parser.add_argument("--individuals", type=int, default=24)
    parser.add_argument("--images-per-individual", type=int, default=6, help="gallery images per individual")
    parser.add_argument("--size", type=int, default=128, help="gallery image side, px")
    parser.add_argument("--photo-size", type=int, default=384)
    parser.add_argument("--method", default="reference", help="detector")
    parser.add_argument("--set", dest="options", action="append", metavar="KEY=VALUE", default=[])
    parser.add_argument("--sam-model", default=None, help="also compare SAM automatic vs box-prompted (tiny, vit_b...)")
    parser.add_argument("--sam-checkpoint", default=None)
    args = parser.parse_args()

    os.environ.setdefault("REID_HOME", tempfile.mkdtemp(prefix="detect-figures-home-"))
    import polars as pl

    from reid_core.cli.options import parse_assignments
    from reid_core.data import files as rio
    from reid_core.data import synthetic
    from reid_core.detection.boxes import match
    from reid_core.matching.registry import get_matcher
    from reid_core.pipelines.detect import DetectJob
    from reid_core.pipelines.detect import run as detect
    from reid_core.pipelines.segment import SegmentJob
    from reid_core.pipelines.segment import run as segment
    from reid_core.segmentation.masking import MaskingConfig

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="detect-figures-"))
    synthetic.generate(tmp / "data", species=("tiger",), individuals=args.individuals,
                       images_per_individual=args.images_per_individual, size=args.size, seed=args.seed, workers=1)
    whole = synthetic.generate_whole_photos(str(tmp / "data" / "whole"), ("tiger",), args.photos,
                                            individuals=args.individuals, seed=args.seed, size=args.photo_size)
    report = detect(DetectJob(manifest=str(tmp / "data" / "whole" / "manifest.parquet"), output=str(tmp / "det"),
                              method=args.method, options=parse_assignments(args.options, "--set")))
    crops = pl.read_parquet(report.manifest_out)

    # Recall / precision at IoU 0.5 over every photo.
    truth = {r["image_id"]: synthetic.read_truth(r["ref_boxes_uri"]) for r in whole.iter_rows(named=True)}
    true_positives = predicted = actual = 0
    for photo_id, animals in truth.items():
        mine = crops.filter(pl.col("photo_id") == photo_id)
        boxes = [tuple(b) for b in mine.select("box_x0", "box_y0", "box_x1", "box_y1").iter_rows()]
        true_positives += len(match(boxes, [a["box"] for a in animals], 0.5))
        predicted, actual = predicted + len(boxes), actual + len(animals)

    # Identification top-1 by SIFT on single-animal photos: whole frame vs crop vs background-free crop.
    gallery_rows = pl.read_parquet(tmp / "data" / "manifest.parquet").filter(pl.col("split") == "test")
    seg = segment(SegmentJob(manifest=str(tmp / "data" / "manifest.parquet"), output=str(tmp / "seg"),
                             method="reference", species=("tiger",), masking=MaskingConfig(crop=True)))
    gallery = pl.read_parquet(seg.manifest_out).filter(pl.col("split") == "test")
    crop_seg = segment(SegmentJob(manifest=report.manifest_out, output=str(tmp / "crop-seg"), method="reference",
                                  masking=MaskingConfig(crop=True)))
    masked_crops = pl.read_parquet(crop_seg.manifest_out)
    single = [p for p, animals in truth.items() if len(animals) == 1]
    engine = get_matcher("sift")

    def features(uri: str):
        return engine.extract(np.asarray(rio.read_image(uri)))

    gallery_features = [(row["individual"], features(row["masked_uri"])) for row in gallery.iter_rows(named=True)]

    def top1(uri: str) -> str:
        query = features(uri)
        best: dict[str, float] = {}
        for individual, candidate in gallery_features:
            score = float(engine.match(query, candidate).score)
            best[individual] = max(best.get(individual, -1.0), score)
        return max(best, key=best.get)

    hits = {"whole_photo": 0, "crop": 0, "crop_background_removed": 0}
    counted = 0
    for photo_id in single:
        answer = truth[photo_id][0]["individual"]
        crop = crops.filter(pl.col("photo_id") == photo_id)
        masked = masked_crops.filter(pl.col("photo_id") == photo_id)
        if crop.height != 1 or masked["masked_uri"][0] is None:
            continue
        counted += 1
        photo_uri = whole.filter(pl.col("image_id") == photo_id)["image_uri"][0]
        hits["whole_photo"] += top1(photo_uri) == answer
        hits["crop"] += top1(crop["image_uri"][0]) == answer
        hits["crop_background_removed"] += top1(masked["masked_uri"][0]) == answer

    result = {
        "seed": args.seed, "method": args.method, "photos": whole.height, "animals": actual,
        "photos_empty_truth": sum(1 for a in truth.values() if not a), "photos_empty_detected": report.empty,
        "recall_iou50": true_positives / actual if actual else None,
        "precision_iou50": true_positives / predicted if predicted else None,
        "identify_top1_sift": {k: v / counted for k, v in hits.items()} if counted else None,
        "single_animal_photos": counted, "gallery_images": gallery.height,
        "gallery_individuals": gallery_rows["individual"].n_unique(),
    }
    if args.sam_model:
        options = {"model_type": args.sam_model, "policy": "keep", "device": "cpu"}
        if args.sam_checkpoint:
            options["sam_checkpoint"] = args.sam_checkpoint
        for mode in ("automatic", "box"):
            sam = segment(SegmentJob(manifest=report.manifest_out, output=str(tmp / f"sam-{mode}"), method="sam",
                                     options=options | {"sam_mode": mode}))
            result[f"sam_{mode}_iou_mean"] = sam.iou_mean
            result[f"sam_{mode}_iou_rows"] = sam.iou_rows
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
