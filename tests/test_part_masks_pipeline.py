"""The part-mask stage (Ray Data) end to end on tiny fixtures in the real formats: ATRW keypoints after the
segmentation stage cropped the masked images (failures recorded, labels aligned with the masked image,
a rerun skips finished rows), and a COCO keypoint file with its mapping, tail traced, on S3."""

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageDraw

from reid_core.cli.part_masks import main
from reid_core.data import files as rio
from reid_core.data import manifest as mf
from reid_core.parts.schemes import LABELS
from reid_core.pipelines.part_masks import PartMaskJob, run
from reid_core.pipelines.segment import SegmentJob
from reid_core.pipelines.segment import run as segment
from reid_core.segmentation.masking import MaskingConfig

HEAD, BODY, FRONT, HIND, TAIL = (LABELS.index(p) for p in ("head", "body", "front_legs", "hind_legs", "tail"))
COLOURS = {HEAD: (220, 30, 30), BODY: (30, 160, 30), FRONT: (30, 60, 220), HIND: (230, 200, 20), TAIL: (200, 40, 200)}
# A side-view tiger facing left, as boxes (left, top, right, bottom) relative to its corner.
SHAPES = {HEAD: (0, 0, 30, 30), BODY: (30, 10, 110, 45), FRONT: (35, 45, 50, 75), HIND: (90, 45, 105, 75),
          TAIL: (110, 15, 150, 23)}
# ATRW's 15 keypoints in their order, each inside its part (x, y relative to the corner).
ATRW_KEYPOINTS = [((8, 4), HEAD), ((20, 4), HEAD), ((4, 20), HEAD), ((40, 48), FRONT), ((40, 72), FRONT),
                  ((46, 48), FRONT), ((46, 72), FRONT), ((94, 48), HIND), ((94, 60), HIND), ((94, 72), HIND),
                  ((101, 48), HIND), ((101, 60), HIND), ((101, 72), HIND), ((114, 19), TAIL), ((70, 27), BODY)]
CANVAS = (320, 200)


def _draw(corner: tuple[int, int], shapes: dict = SHAPES, canvas: tuple[int, int] = CANVAS):
    """(RGB image, mask) of the drawn animal on grey."""
    image = Image.new("RGB", canvas, (128, 128, 128))
    mask = Image.new("L", canvas, 0)
    for label, boxes in shapes.items():
        for left, top, right, bottom in boxes if isinstance(boxes, list) else [boxes]:
            box = (corner[0] + left, corner[1] + top, corner[0] + right - 1, corner[1] + bottom - 1)
            ImageDraw.Draw(image).rectangle(box, fill=COLOURS[label])
            ImageDraw.Draw(mask).rectangle(box, fill=255)
    return image, mask


def _part_of_colour(pixels: np.ndarray) -> np.ndarray:
    """The part whose colour is nearest each pixel (JPEG shifts colours a little); 0 for the white fill."""
    palette = np.array([(255, 255, 255)] + [COLOURS[k] for k in sorted(COLOURS)], dtype=np.float64)
    distances = ((pixels[..., None, :].astype(np.float64) - palette) ** 2).sum(axis=-1)
    return np.array([0, *sorted(COLOURS)])[distances.argmin(axis=-1)]


def _atrw_fixture(root: Path) -> tuple[str, Path]:
    """ATRW re-ID crops (jpg), reid_keypoints_train.json and a manifest with reference masks: row 3 is
    absent from the keypoints file, row 4's mask is empty (the test breaks row 5's mask later)."""
    images = root / "atrw_reid_train" / "train"
    images.mkdir(parents=True)
    (root / "masks").mkdir()
    corners = {1: (60, 50), 2: (150, 110), 3: (80, 60), 4: (70, 40), 5: (90, 70)}
    keypoints, rows = {}, []
    for number, corner in corners.items():
        name = f"{number:06d}.jpg"
        image, mask = _draw(corner)
        image.save(images / name, "JPEG", quality=95, subsampling=0)
        (mask if number != 4 else Image.new("L", CANVAS, 0)).save(root / "masks" / f"{number}.png")
        if number != 3:
            keypoints[name] = [float(v) for (x, y), _ in ATRW_KEYPOINTS for v in (corner[0] + x, corner[1] + y, 2)]
        rows.append({"image_id": f"atrw/train/{number:06d}", "image_uri": str(images / name), "species": "tiger",
                     "individual": str(number), "entity": str(number), "side": "unknown", "split": "train",
                     "ref_mask_uri": str(root / "masks" / f"{number}.png")})
    (root / "atrw_anno_reid_train").mkdir()
    keypoints_file = root / "atrw_anno_reid_train" / "reid_keypoints_train.json"
    keypoints_file.write_text(json.dumps(keypoints))
    manifest = str(root / "manifest.parquet")
    mf.write(mf.conform(pl.DataFrame(rows)), manifest)
    return manifest, keypoints_file


def _summary(stdout: str) -> dict:
    return json.loads([x for x in stdout.splitlines() if x.startswith('{"summary"')][-1])["summary"]


@pytest.mark.slow
def test_atrw_keypoints_on_cropped_masked_images(tmp_path, ray_local, capsys):
    from reid_core.data.dataset import read_label_map

    manifest, keypoints_file = _atrw_fixture(tmp_path / "atrw")
    seg = segment(SegmentJob(manifest=manifest, output=str(tmp_path / "seg"), method="reference",
                             masking=MaskingConfig(crop=True)))
    assert seg.statuses == {"flagged": 1, "ok": 4}  # the empty reference mask is flagged
    segmented = pl.read_parquet(seg.manifest_out)
    broken = segmented.filter(pl.col("image_id") == "atrw/train/000005")["mask_uri"][0]
    Path(broken).write_bytes(b"not a png")  # an unreadable mask

    out = tmp_path / "parts"
    argv = ["--manifest", seg.manifest_out, "--keypoints", str(keypoints_file), "--scheme", "tiger",
            "--output", str(out), "--batch-size", "2"]
    assert main(argv) == 0
    summary = _summary(capsys.readouterr().out)
    assert (summary["processed"], summary["failed"], summary["statuses"]) == (5, 3, {"failed": 3, "ok": 2})

    parts = mf.read(summary["manifest_out"])  # the written manifest validates
    assert parts.drop(mf.PARTS_SCHEMA).equals(segmented.drop(mf.PARTS_SCHEMA, strict=False))
    errors = dict(parts.select("image_id", "parts_error").iter_rows())
    assert errors["atrw/train/000003"] == (f"no keypoints for '000003.jpg' in {keypoints_file} "
                                           "(matched by the image's file name)")
    assert errors["atrw/train/000004"] == "no foreground: the mask is empty"
    assert errors["atrw/train/000005"].startswith(f"mask {broken} cannot be read (UnidentifiedImageError: not an image Pillow can read (9 bytes")
    good = parts.filter(pl.col("parts_status") == "ok")
    assert good["image_id"].to_list() == ["atrw/train/000001", "atrw/train/000002"]
    assert json.loads(good["parts_config"][0])["scheme"] == "tiger"

    for row in good.iter_rows(named=True):
        assert row["parts_uri"] == str(out / "tiger" / "parts" / "atrw" / "train" / f"{row['image_id'][-6:]}.png")
        stored = Image.open(row["parts_uri"])
        assert stored.mode == "L" and stored.size == (64, 64)
        assert set(np.unique(np.asarray(stored))) == {0, HEAD, BODY, FRONT, HIND, TAIL}
        # The masked image was cropped: the labels, loaded as training loads them, sit on its pixels.
        masked = np.asarray(Image.open(row["masked_uri"]))
        assert masked.shape[:2] != CANVAS[::-1]
        labels = read_label_map(row["parts_uri"], (masked.shape[1], masked.shape[0])).numpy()
        assert json.loads(row["seg_config"])["masking"]["crop"] is True
        shown = _part_of_colour(masked)
        # Where the crop put the animal: find its corner in the masked image from the head's colour.
        top, left = (int(v.min()) for v in np.nonzero(shown == HEAD))
        for (x, y), part in ATRW_KEYPOINTS:
            assert labels[top + y, left + x] == part == shown[top + y, left + x], (row["image_id"], x, y)
        assert ((labels > 0) == (shown > 0)).mean() > 0.97  # background where the fill is
        for part in COLOURS:  # each part's labels mostly lie on that part's colour
            assert (shown[labels == part] == part).mean() > 0.6, (row["image_id"], LABELS[part])

    # A rerun skips the finished rows (their files untouched) and retries the failures.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert main(argv) == 0
    again = _summary(capsys.readouterr().out)
    assert (again["skipped"], again["processed"], again["failed"]) == (2, 3, 3)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps
    assert pl.read_parquet(summary["manifest_out"]).equals(parts)
    assert len(list((out / "_journal").iterdir())) == 1 and not list(out.rglob("*.tmp-*"))


# An animal whose tail turns down: a straight line between the tail's ends would leave the mask.
BENT = {HEAD: (0, 10, 20, 30), BODY: (20, 10, 90, 40), FRONT: (25, 40, 35, 70), HIND: (75, 40, 85, 70),
        TAIL: [(90, 18, 114, 24), (110, 18, 116, 70)]}
COCO_NAMES = ["nose", "neck_base", "back_middle", "tail_base", "tail_end", "front_left_thigh", "front_left_paw",
              "back_left_thigh", "back_left_paw", "left_antler_base"]
COCO_POINTS = [(6, 20), (24, 20), (55, 25), (88, 21), (113, 66), (30, 42), (30, 66), (80, 42), (80, 66), (3, 3)]
MAPPING = {
    "name": "quadruped-test",
    "parts": {"nose": "head", "neck_base": "body", "back_middle": "body", "tail_base": "body", "tail_end": "tail",
              "front_left_thigh": "front_legs", "front_left_paw": "front_legs", "back_left_thigh": "hind_legs",
              "back_left_paw": "hind_legs", "left_antler_base": None},
    "connections": [["nose", "neck_base", "head"], ["neck_base", "back_middle"], ["back_middle", "tail_base"],
                    ["front_left_thigh", "front_left_paw"], ["back_left_thigh", "back_left_paw"]],
    "tail": ["tail_base", "tail_end"],
}


@pytest.mark.slow
def test_coco_keypoints_with_a_mapping_file_on_s3(s3_bucket, tmp_path, ray_local):
    root = f"{s3_bucket}/pose"
    canvas = (128, 96)
    image, mask = _draw((4, 8), BENT, canvas)
    rows, images = [], []
    for number in (1, 2):
        rio.write_image(f"{root}/images/c{number}.png", image)
        rio.write_image(f"{root}/masks/c{number}.png", mask)
        rows.append({"image_id": f"c{number}", "image_uri": f"{root}/images/c{number}.png", "species": "yak",
                     "individual": "1", "entity": "1", "side": "left", "split": "train",
                     "mask_uri": f"{root}/masks/c{number}.png"})
        images.append({"id": number, "file_name": f"frames/c{number}.png", "width": canvas[0], "height": canvas[1]})
    points = [v for x, y in COCO_POINTS for v in (4 + x, 8 + y, 0.9)]
    coco = {"images": images, "categories": [{"id": 1, "name": "quadruped", "keypoints": COCO_NAMES, "skeleton": []}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": points},
                            {"id": 2, "image_id": 2, "category_id": 1, "keypoints": [0.0] * 30}]}
    rio.write_bytes(f"{root}/coco_keypoints.json", json.dumps(coco).encode())
    mapping = tmp_path / "quadruped.json"
    mapping.write_text(json.dumps(MAPPING))
    mf.write(mf.conform(pl.DataFrame(rows)), f"{root}/manifest.parquet")

    credentials = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}  # moto's dummies
    job = PartMaskJob(manifest=f"{root}/manifest.parquet", keypoints=(f"{root}/coco_keypoints.json",),
                      mapping=str(mapping), worker_env=credentials)
    report = run(job)
    assert report.output == f"{root}/parts-quadruped-test" and report.statuses == {"failed": 1, "ok": 1}
    assert report.failures == [["c2", "no usable keypoint: none of the 10 has visibility > 0.5"]]
    parts = mf.read(report.manifest_out)
    uri = parts["parts_uri"][0]
    assert uri == f"{root}/parts-quadruped-test/yak/parts/c1.png"
    stored = rio.read_image(uri, mode="")
    assert stored.mode == "L" and stored.size == (64, 64)
    labels = np.asarray(stored.resize(canvas, Image.Resampling.NEAREST))
    at = lambda x, y: labels[8 + y, 4 + x]  # noqa: E731 - relative to the drawn corner
    # A quarter along the tail from its base: nearer the base (body) than its tip, but the traced
    # points make it tail; so is the bend, which a straight line would miss.
    assert at(103, 21) == TAIL and at(113, 30) == TAIL and at(113, 66) == TAIL
    assert at(6, 20) == HEAD and at(55, 25) == BODY and at(30, 60) == FRONT and at(80, 60) == HIND
    assert at(-2, -2) == 0 and at(60, 60) == 0  # outside the animal
    assert run(job).skipped == 1
