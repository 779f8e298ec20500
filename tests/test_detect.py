"""Detection: the synthetic whole photos, the reference detector, and the detection stage on Ray Data
(crop rows, empty photos, per-photo failures, reruns). The reference detector stands in for
MegaDetector: the stage's machinery is what is under test (tests/test_megadetector.py loads the model)."""

import json

import numpy as np
import polars as pl
import pytest
from PIL import Image

from reid_core.cli import app
from reid_core.data import files as rio
from reid_core.data import manifest as mf
from reid_core.data import synthetic
from reid_core.detection import registry
from reid_core.detection.boxes import crop_window, iou, match
from reid_core.pipelines.detect import DetectJob, run


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """Tiger whole photos (seed 0, 160 px) plus an empty photo and a corrupt one; the manifest's path."""
    out = tmp_path_factory.mktemp("whole")
    df = synthetic.generate_whole_photos(str(out / "photos"), ("tiger",), 5, individuals=10, seed=0, size=160,
                                         test_fraction=0.5)
    empty_uri, empty_boxes = str(out / "empty.png"), str(out / "empty.json")
    Image.new("RGB", (160, 160), (90, 120, 60)).save(empty_uri)
    rio.write_bytes(empty_boxes, b"[]")
    corrupt_uri = str(out / "corrupt.png")
    rio.write_bytes(corrupt_uri, b"\x89PNG\r\n\x1a\n not a png at all")
    extra = df.head(2).with_columns(pl.Series("image_id", ["tiger/empty", "tiger/corrupt"]),
                                    pl.Series("image_uri", [empty_uri, corrupt_uri]),
                                    pl.Series("ref_boxes_uri", [empty_boxes, empty_boxes]),
                                    pl.Series("animals", [0, 0]))
    path = str(out / "manifest.parquet")
    mf.write(mf.check(pl.concat([df, extra])), path)
    return path


def test_whole_photos_have_exact_boxes_and_masks_and_are_reproducible(tmp_path):
    df = synthetic.generate_whole_photos(str(tmp_path / "a"), ("tiger", "yak"), 4, individuals=8, seed=3, size=128)
    again = synthetic.generate_whole_photos(str(tmp_path / "b"), ("tiger", "yak"), 4, individuals=8, seed=3, size=128)
    assert df.height == 8 and set(df["role"]) == {"query"} and df["individual"].is_null().all()
    assert df["animals"].to_list() == again["animals"].to_list() and df["animals"].max() <= 3
    test_individuals = set()
    for row in df.iter_rows(named=True):
        photo = np.asarray(Image.open(row["image_uri"]))
        assert photo.shape == (128, 128, 3)
        assert (photo == np.asarray(Image.open(row["image_uri"].replace("/a/", "/b/")))).all()
        union = np.zeros((128, 128), bool)
        for animal in synthetic.read_truth(row["ref_boxes_uri"]):
            mask = np.asarray(Image.open(animal["mask_uri"])) > 127
            ys, xs = np.nonzero(mask)
            assert animal["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # the mask's exact box
            assert not (union & mask).any()  # no animal hides another
            union |= mask
            test_individuals.add(animal["individual"])
    plan = synthetic.plan(("tiger", "yak"), 8, 1, seed=3)
    test = {f"{s}_{i:04d}" for s, i, split in plan.select("species", "index", "split").iter_rows() if split == "test"}
    assert test_individuals and test_individuals <= test  # a gallery of the test split can name them


def test_boxes_iou_crop_window_and_matching():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0 and iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert crop_window((10, 20, 30, 60), 100, 100, 0.1) == (8, 16, 32, 64)
    assert crop_window((0, 0, 100, 100), 100, 100, 0.5) == (0, 0, 100, 100)  # never outside the photo
    # Greedy, one-to-one: the second prediction cannot take the truth the first one matched.
    assert match([(0, 0, 10, 10), (1, 1, 10, 10)], [(0, 0, 10, 10)]) == [(0, 0, 1.0)]
    assert match([(50, 50, 60, 60)], [(0, 0, 10, 10)]) == []


def test_detector_options_are_typed_and_checked():
    assert registry.parse_options("reference", {"labels": "false"}).labels is False
    with pytest.raises(ValueError, match="takes no option bogus; it takes: column, labels"):
        registry.parse_options("reference", {"bogus": 1})
    with pytest.raises(ValueError, match="unknown detector 'yolo'"):
        registry.spec("yolo")


def test_detect_crops_every_animal_counts_empty_photos_fails_per_photo_and_resumes(whole, tmp_path, ray_local):
    out = str(tmp_path / "det")
    job = DetectJob(manifest=whole, output=out, method="reference", batch_size=2)
    report = run(job)
    photos = pl.read_parquet(report.photos_manifest)
    crops = mf.read(report.manifest_out, validate_kwargs={"disjoint": ()})
    truth = {r["image_id"]: synthetic.read_truth(r["ref_boxes_uri"]) for r in photos.iter_rows(named=True)
             if r["image_id"] not in ("tiger/corrupt",)}

    # Every photo row stays, with its status; the corrupt one failed on its own, the empty one is counted.
    assert photos.height == 7 and photos["image_id"].to_list() == pl.read_parquet(whole)["image_id"].to_list()
    status = dict(zip(photos["image_id"], photos["det_status"], strict=True))
    assert status["tiger/corrupt"] == "failed" and status["tiger/empty"] == "empty"
    assert report.failed == 1 and "tiger/corrupt" in report.failures[0][0]
    assert report.empty == 1 + sum(1 for k, t in truth.items() if not t and k != "tiger/empty")
    assert "tiger/empty" in report.empty_photos
    assert report.animals == crops.height == sum(len(t) for t in truth.values())

    # A photo with two animals gives two crop rows whose boxes match the reference (IoU >= 0.9).
    two = [k for k, t in truth.items() if len(t) == 2]
    assert two, "the fixture has no photo with two animals: change its seed"
    for photo_id in two:
        rows = crops.filter(pl.col("photo_id") == photo_id).sort("image_id")
        assert rows.height == 2 and rows["image_id"].to_list() == [f"{photo_id}#0", f"{photo_id}#1"]
        boxes = [tuple(b) for b in rows.select("box_x0", "box_y0", "box_x1", "box_y1").iter_rows()]
        matched = match(boxes, [t["box"] for t in truth[photo_id]], threshold=0.9)
        assert len(matched) == 2
        for (i, j, _), row in zip(sorted(matched), rows.iter_rows(named=True), strict=True):
            assert row["individual"] == truth[photo_id][j]["individual"]  # the reference knows who
            assert row["detector"] == "reference" and row["det_score"] == 1.0
            crop = Image.open(row["image_uri"])  # the crop is an image of the box and its margin
            left, top, right, bottom = crop_window(boxes[i], 160, 160, job.margin)
            assert crop.size == (right - left, bottom - top)
            ref = np.asarray(Image.open(row["ref_mask_uri"]))
            assert ref.shape == (crop.size[1], crop.size[0]) and ref.any()

    # The crops manifest is what segment and train take: valid, with crops as images, no photo columns.
    assert "ref_boxes_uri" not in crops.columns and crops["image_uri"].str.contains("/crops/").all()

    # A rerun skips finished photos and retries only the failed one.
    again = run(job)
    assert again.skipped == 6 and again.processed == 1 and again.failed == 1
    assert pl.read_parquet(again.manifest_out).height == crops.height


def test_reid_detect_command_line(whole, tmp_path, ray_local, capsys):
    out = str(tmp_path / "cli")
    code = app.main(["detect", "--manifest", whole, "--output", out, "--method", "reference", "--threshold", "0.5",
                     "--crop-format", "jpg"])
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed.strip().splitlines()[-1])["summary"]
    assert summary["empty"] >= 1 and summary["failed"] == 1 and "empty photos:" in printed
    crops = pl.read_parquet(f"{out}/manifest.parquet")
    assert crops.height == summary["animals"] > 0 and crops["image_uri"].str.ends_with(".jpg").all()


def test_sam_takes_the_detector_box_as_its_prompt(single_torch_thread):
    from reid_core.segmentation.registry import build_segmenter

    segmenter = build_segmenter("sam", {"model_type": "tiny", "sam_mode": "box", "device": "cpu", "policy": "keep",
                                        "points_per_side": 4, "max_width": 40, "max_height": 40})
    prompts, boxed = [], segmenter.sam.boxed
    segmenter.sam.boxed = lambda image, box: prompts.append(box) or boxed(image, box)
    crop = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    # A crop whose corner is (100, 40) in the photo, the animal's box (110, 52)-(170, 92) in the photo's pixels.
    row = {"box_x0": 110.0, "box_y0": 52.0, "box_x1": 170.0, "box_y1": 92.0, "crop_left": 100, "crop_top": 40}
    result = segmenter.segment(crop, row)
    # Downscaled to 40 px wide (scale 0.5) before SAM: the box in those pixels, the mask back at the crop's size.
    assert prompts == [(5.0, 6.0, 35.0, 26.0)]
    assert result.mask.shape == (60, 80) and result.details["sam_mode"] == "box" and result.details["proposals"] == 1
    other = segmenter.segment(crop, {"image_id": "not a crop"})  # no box: SAM's automatic proposals
    assert other.details["sam_mode"] == "automatic (no box)" and len(prompts) == 1


def test_s3_photos_in_crops_and_manifests_out(s3_bucket, ray_local):
    """Photos, boxes and masks on S3; crops, detections and both manifests written back; a rerun skips."""
    import os

    source, output = f"{s3_bucket}/whole", f"{s3_bucket}/detected"
    synthetic.generate_whole_photos(source, ("tiger",), 3, individuals=6, seed=2, size=128, test_fraction=0.5)
    credentials = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    job = DetectJob(manifest=f"{source}/manifest.parquet", output=output, method="reference", batch_size=2,
                    worker_env=credentials)
    report = run(job)
    photos = mf.read(f"{source}/manifest.parquet", validate_kwargs={"disjoint": ()})
    assert (report.processed, report.failed, report.manifest_out) == (3, 0, f"{output}/manifest.parquet")
    crops = mf.read(report.manifest_out, validate_kwargs={"disjoint": ()})
    assert crops.height == report.animals == int(photos["animals"].sum()) > 0
    for row in crops.iter_rows(named=True):
        assert row["image_uri"].startswith(f"{output}/tiger/crops/") and rio.read_image(row["image_uri"]).size[0] > 0
        assert rio.exists(row["ref_mask_uri"])
    assert rio.exists(report.photos_manifest)
    again = run(job)
    assert (again.skipped, again.to_process, again.processed) == (3, 0, 0)
