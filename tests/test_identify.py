"""Identify new photos with a registered model: known individuals ranked, held-out ones flagged new,
a corrupt photo reported while the others go on, reruns skip finished photos, the gallery cache.

The model is a random-weight tiny DVE published through the real path. Its embeddings tell images
apart but do not know individuals, so the known queries are copies of gallery images (distance ~0:
their individual must come first, through the per-individual ranking and the row bookkeeping) and the
held-out individuals' own photos must be flagged new. How a trained model does on unseen photos is
measured in the README ("Identify new photos"), not here.
"""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest
from lifecycle_support import publish_model, tiny_dve

from reid_core import tracking
from reid_core.data import manifest
from reid_core.engine.evaluate import embed_rows
from reid_core.lifecycle import gallery_cache
from reid_core.lifecycle.model_eval import eval_transform_for
from reid_core.lifecycle.open_set_calibration import THRESHOLD_TAG, calibrate
from reid_core.pipelines.identify import IdentifyJob, match, parse_model, run
from reid_core.settings import Settings

HELD_OUT = 2  # individuals absent from the gallery


@pytest.fixture(scope="module")
def published(tiny_synthetic, tmp_path_factory):
    home = tmp_path_factory.mktemp("identify_home")
    settings = Settings.from_env({"REID_HOME": str(home)})
    settings.ensure_dirs()
    result = publish_model(tiny_dve(seed=0), tiny_synthetic, "tiger", settings)
    return settings, result


@pytest.fixture(scope="module")
def photos(tiny_synthetic, tmp_path_factory):
    """A gallery without HELD_OUT individuals, and a folder of new photos: copies of 6 gallery images
    (known), every photo of the held-out individuals (new) and one corrupt file."""
    rows = manifest.read(tiny_synthetic)
    individuals = sorted(rows["individual"].unique().to_list())
    held_out = individuals[:HELD_OUT]
    gallery = rows.filter(~pl.col("individual").is_in(held_out))
    root = tmp_path_factory.mktemp("identify_data")
    manifest.write(gallery, str(root / "gallery.parquet"))
    folder = root / "new_photos"
    folder.mkdir()
    truth = {}
    for row in gallery.sort("image_id").gather_every(len(gallery) // 6).head(6).iter_rows(named=True):
        name = f"known_{row['image_id'].replace('/', '_')}.png"
        shutil.copy(row["image_uri"], folder / name)
        truth[name] = row["individual"]
    for row in rows.filter(pl.col("individual").is_in(held_out)).iter_rows(named=True):
        shutil.copy(row["image_uri"], folder / f"new_{row['image_id'].replace('/', '_')}.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return str(root / "gallery.parquet"), str(folder), truth, held_out


@pytest.mark.slow
def test_publish_stores_the_threshold_calibrated_on_validation(published, tiny_synthetic):
    settings, result = published
    version = tracking.get_version_by_alias(result.registered_name, tracking.CANDIDATE, settings)
    stored = float(version.tags[THRESHOLD_TAG])
    # An independent path: the logged pt2 program embeds the validation rows, the same calibration.
    val = manifest.read(tiny_synthetic).filter(pl.col("split") == "val")
    uri = f"models:/{result.registered_name}/{result.version}"
    features = embed_rows(tracking.load_model(uri, settings), val, eval_transform_for(uri, settings))
    assert stored == pytest.approx(calibrate(features, val).threshold, abs=1e-5)
    assert 0 < stored < 2  # a cosine distance


@pytest.mark.slow
def test_identify_ranks_known_flags_new_reports_corrupt_and_reruns(published, photos, tmp_path, ray_local):
    settings, result = published
    gallery, folder, truth, held_out = photos
    job = IdentifyJob(model=f"{result.registered_name}@candidate", images=folder, gallery=gallery,
                      out=str(tmp_path / "out"), top_k=3, threshold=1e-4, batch_size=8)
    first = run(job, settings, progress=lambda line: None)
    table = pl.read_parquet(tmp_path / "out" / "identifications.parquet")
    assert first.images == len(truth) + 8 + 1 and first.gallery_cache == "miss"

    failed = table.filter(pl.col("status") == "failed")
    assert failed["image_id"].to_list() == ["corrupt.png"] and "UnidentifiedImageError" in failed["error"][0]
    known = table.filter(pl.col("image_id").is_in(list(truth)))
    assert known["decision"].to_list() == ["known"] * len(truth)
    assert dict(zip(known["image_id"], known["top1_individual"], strict=True)) == truth  # every one ranked first
    assert all(len(set(ids)) == 3 for ids in known["topk_individuals"])  # top-k individuals, not images
    new = table.filter(pl.col("image_id").str.starts_with("new_"))
    assert new.height == 8 and (new["decision"] == "new").all()
    assert not set(new["top1_individual"]) & set(held_out)  # never named as a gallery individual
    assert (tmp_path / "out" / "identifications.csv").read_text().count("\n") == table.height + 1
    sheets = sorted(p.name for p in (tmp_path / "out" / "sheets").iterdir())
    assert len(sheets) == table.height - 1  # one per identified photo
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("<tr class=") == table.height and "sheets/" in page

    # A rerun embeds nothing again: every readable photo is in the journal; the gallery is cached.
    again = run(job, settings, progress=lambda line: None)
    assert (again.embedded, again.skipped, again.gallery_cache) == (0, len(truth) + 8, "hit")
    rerun_table = pl.read_parquet(tmp_path / "out" / "identifications.parquet")
    assert rerun_table.drop("error").equals(table.drop("error"))



def test_the_gallery_cache_key_changes_with_the_model_version_and_the_gallery(tiny_synthetic):
    gallery = manifest.read(tiny_synthetic)
    key = gallery_cache.cache_key("models:/reid-dve-tiger/1", gallery, "image_uri", flip_tta=False)
    assert key == gallery_cache.cache_key("models:/reid-dve-tiger/1", gallery.reverse(), "image_uri", False)  # order
    changed = {
        "a new model version": gallery_cache.cache_key("models:/reid-dve-tiger/2", gallery, "image_uri", False),
        "a photo fewer": gallery_cache.cache_key("models:/reid-dve-tiger/1", gallery.head(-1), "image_uri", False),
        "a relabelled photo": gallery_cache.cache_key(
            "models:/reid-dve-tiger/1", gallery.with_columns(pl.col("entity").shift(1).fill_null("x")), "image_uri",
            False),
        "re-segmented photos": gallery_cache.cache_key(
            "models:/reid-dve-tiger/1", gallery.with_columns((pl.col("image_uri") + "-masked").alias("masked_uri")),
            "masked_uri", False),
        "flip TTA": gallery_cache.cache_key("models:/reid-dve-tiger/1", gallery, "image_uri", True),
    }
    assert all(value != key for value in changed.values()), changed
    assert gallery_cache.cache_uri("/c", "reid-dve-tiger", "2", key) == f"/c/reid-dve-tiger/v2/gallery-{key}.parquet"


def test_match_orders_individuals_by_their_best_image():
    gallery = np.array([[1, 0], [0.8, 0.6], [0, 1], [0.6, 0.8]], dtype=np.float32)
    individuals = np.array(["a", "b", "b", "c"])
    names, similarity, images, distance = match(np.array([[1, 0.1]], dtype=np.float32), gallery, individuals, 3)
    assert names.tolist() == [["a", "b", "c"]] and images.tolist() == [[0, 1, 3]]
    assert similarity[0, 0] == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)
    assert distance[0] == pytest.approx(1 - similarity[0, 0], abs=1e-6)


def test_model_names_and_errors():
    assert parse_model("reid-dve-tiger@production") == ("reid-dve-tiger", None, "production")
    assert parse_model("models:/reid-dve-tiger/3") == ("reid-dve-tiger", "3", None)
    with pytest.raises(ValueError, match="NAME@ALIAS"):
        parse_model("reid-dve-tiger")
