"""Identify on whole photos: detect (the reference detector), crop, segment (the model's own background
removal: reference masks, black fill), embed, match; one identification per animal, and a sheet per
photo with each box labelled by its individual.

As in tests/test_identify.py the model is a random-weight tiny DVE, which cannot know individuals from
new poses: each animal pasted into a whole photo is a gallery image itself (the detector's crop with no
margin is that image, its background removed as the gallery's was), so naming it exercises the path
photo -> boxes -> crops -> masks -> embeddings -> ranking -> sheet, not the model's skill.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import polars as pl
import pytest
from lifecycle_support import publish_model, tiny_dve
from PIL import Image
from test_identify import bursts  # noqa: F401 (the module-scoped fixture: background-free gallery images)

from reid_core.data import manifest
from reid_core.pipelines.identify import IdentifyJob, run
from reid_core.segmentation.masking import MaskingConfig
from reid_core.settings import Settings

# How the gallery's masked images were made (tests/test_identify.cut_out): reference masks, black background.
SEGMENTATION = json.dumps({"method": "reference", "options": {}, "masking": asdict(MaskingConfig(fill=(0, 0, 0)))})


@pytest.fixture(scope="module")
def published(bursts, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("whole_identify")
    path = str(root / "gallery.parquet")
    manifest.write(manifest.read(bursts[0]).with_columns(pl.lit(SEGMENTATION).alias("seg_config")), path)
    settings = Settings.from_env({"REID_HOME": str(root / "home")})
    settings.ensure_dirs()
    return settings, publish_model(tiny_dve(seed=0), path, "tiger", settings), path


@pytest.fixture(scope="module")
def whole_photos(published, tmp_path_factory):
    """Three photos: two animals, one animal, none; each animal a gallery image pasted at a known place."""
    _, _, gallery = published
    rows = manifest.read(gallery).filter(pl.col("split") != "val").unique("individual", keep="first",
                                                                          maintain_order=True).head(3)
    root = tmp_path_factory.mktemp("whole")
    rng = np.random.default_rng(1)
    layout = {"two": [(8, 10), (100, 60)], "one": [(40, 30)], "none": []}
    animals = iter(rows.iter_rows(named=True))
    photos, truth = [], {}
    for name, places in layout.items():
        photo = rng.integers(0, 255, (120, 170, 3), dtype=np.uint8)
        boxes = []
        for k, (x, y) in enumerate(places):
            animal = next(animals)
            image = np.asarray(Image.open(animal["image_uri"]).convert("RGB"))
            mask = np.asarray(Image.open(animal["mask_uri"]).convert("L"))
            h, w = mask.shape
            photo[y:y + h, x:x + w] = image
            full = np.zeros(photo.shape[:2], np.uint8)
            full[y:y + h, x:x + w] = mask
            Image.fromarray(full).save(root / f"{name}_{k}.png")
            boxes.append({"box": [x, y, x + w, y + h], "individual": animal["individual"],
                          "mask_uri": str(root / f"{name}_{k}.png")})
            truth[f"tiger/{name}#{k}"] = animal["individual"]
        Image.fromarray(photo).save(root / f"{name}.png")
        (root / f"{name}.json").write_text(json.dumps(boxes))
        photos.append({"image_id": f"tiger/{name}", "image_uri": str(root / f"{name}.png"), "species": "tiger",
                       "side": "unknown", "split": "test", "role": "query", "ref_boxes_uri": str(root / f"{name}.json")})
    path = str(root / "photos.parquet")
    table = pl.DataFrame(photos).with_columns(pl.lit(None, pl.String).alias("individual"),
                                              pl.lit(None, pl.String).alias("entity"))
    manifest.write(manifest.conform(table), path)
    return path, truth


@pytest.mark.slow
def test_identify_on_whole_photos_names_each_animal_and_labels_the_boxes(published, whole_photos, tmp_path,
                                                                        ray_local):
    settings, result, gallery = published
    photos, truth = whole_photos
    out = tmp_path / "out"
    job = IdentifyJob(model=f"{result.registered_name}@candidate", images=photos, gallery=gallery, out=str(out),
                      top_k=3, batch_size=8, shortlist=10, detector="reference", detect_margin=0.0)
    report = run(job, settings, progress=lambda line: None)
    assert (report.photos, report.photos_empty, report.photos_failed, report.images) == (3, 1, 0, 3)
    table = pl.read_parquet(out / "identifications.parquet")
    assert sorted(table["image_id"]) == sorted(truth)  # one identification per animal
    assert (table["status"] == "ok").all() and (table["decision"] == "known").all()
    assert dict(zip(table["image_id"], table["top1_individual"], strict=True)) == truth  # each animal named
    assert table.filter(pl.col("image_id") == "tiger/two#1").select("box_x0", "box_y0").row(0) == (100.0, 60.0)

    # A sheet per photo with animals: the photo itself, its boxes drawn in the known frame's colour.
    sheets = sorted(p.name for p in (out / "sheets" / "photos").glob("*.png"))
    assert sheets == ["tiger__one.png", "tiger__two.png"]
    drawn = np.asarray(Image.open(out / "sheets" / "photos" / "tiger__two.png"))
    assert drawn.shape == (120, 170, 3) and tuple(drawn[65, 100]) == (40, 120, 220)  # the left edge of box 2
    page = (out / "index.html").read_text()
    assert "Whole photos" in page and "sheets/photos/tiger__two.png" in page and "tiger/none" in page
