"""Identify new photos with a registered model: known individuals ranked, held-out ones flagged new at
the operating point stored with the model version (no --threshold), their photos grouped, a corrupt
photo reported while the others go on, reruns skip finished photos, the gallery cache.

The model is a random-weight tiny DVE published through the real path (calibrated on its validation
split with SIFT). Its embeddings tell images apart but do not know individuals, so the known queries are
copies of gallery images (similarity 1 and every keypoint verified: their individual must come first,
through the per-individual ranking and the row bookkeeping) and the held-out individuals' own photos
must be flagged new. How a trained model does on unseen photos is measured by
benchmarks/identify_open_set.py (docs/identify.md), not here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from lifecycle_support import publish_model, tiny_dve
from PIL import Image, ImageEnhance

from reid_core import tracking
from reid_core.data import manifest
from reid_core.data.dataset import images_to_evaluate
from reid_core.engine.evaluate import embed_rows
from reid_core.evaluation.grouping import adjusted_rand
from reid_core.lifecycle import gallery_cache, open_set_calibration
from reid_core.lifecycle.model_eval import eval_transform_for
from reid_core.pipelines.identify import IdentifyJob, parse_model, run
from reid_core.settings import Settings

HELD_OUT = 2  # individuals absent from the gallery


def near_copy(source: str, target: Path, k: int) -> str:
    """Photo ``k`` of a burst: the source shifted by k pixels and a little brighter (k = 0: the source)."""
    image = Image.open(source).convert("RGB")
    width, height = image.size
    moved = image.crop((k, k, width, height)).resize((width, height)) if k else image
    ImageEnhance.Brightness(moved).enhance(1 + 0.04 * k).save(target)
    return str(target)


def cut_out(image_uri: str, mask_uri: str, target: Path) -> str:
    """The background-free image (the fixture's scenes are shared by individuals: local features would match them)."""
    image = np.asarray(Image.open(image_uri).convert("RGB"))
    keep = np.asarray(Image.open(mask_uri).convert("L"))[..., None] > 127
    Image.fromarray(np.where(keep, image, 0).astype(np.uint8)).save(target)
    return str(target)


@pytest.fixture(scope="module")
def bursts(tiny_synthetic, tmp_path_factory):
    """The fixture manifest, background-free (``masked_uri``), with 6 validation individuals whose photos are
    each a burst of near copies of the individual's first photo: the random-weight model cannot know
    individuals, but near copies it can, so calibration on validation learns "near copy = same individual"
    and the decisions below have something to find."""
    folder = tmp_path_factory.mktemp("bursts")
    rows = manifest.read(tiny_synthetic).sort("image_id")
    # Validation: 6 individuals (the 2 of the fixture and 4 of its 5 training ones): impostors of every kind.
    train = sorted(rows.filter(pl.col("split") == "train")["individual"].unique().to_list())[:4]
    rows = rows.with_columns(
        pl.when(pl.col("individual").is_in(train)).then(pl.lit("val")).otherwise(pl.col("split")).alias("split"))
    masked = [cut_out(r["image_uri"], r["mask_uri"], folder / f"{r['image_id'].replace('/', '_')}.png")
              for r in rows.iter_rows(named=True)]
    source = {}  # individual -> its first background-free photo
    for individual, uri in zip(rows["individual"], masked, strict=True):
        source.setdefault(individual, uri)
    masked = [near_copy(source[r["individual"]], folder / f"burst_{r['image_id'].replace('/', '_')}.png", k % 4)
              if r["split"] == "val" else uri for k, (r, uri) in enumerate(zip(rows.iter_rows(named=True), masked,
                                                                                strict=True))]
    path = str(folder / "manifest.parquet")
    manifest.write(rows.with_columns(pl.Series("masked_uri", masked)), path)
    return path, source


@pytest.fixture(scope="module")
def published(bursts, tmp_path_factory):
    home = tmp_path_factory.mktemp("identify_home")
    settings = Settings.from_env({"REID_HOME": str(home)})
    settings.ensure_dirs()
    result = publish_model(tiny_dve(seed=0), bursts[0], "tiger", settings)
    return settings, result


@pytest.fixture(scope="module")
def photos(bursts, tmp_path_factory):
    """A gallery without HELD_OUT individuals, and a manifest of new background-free photos: copies of 6
    gallery images (known), a burst of 4 near copies per held-out individual (new) and one corrupt file."""
    rows = manifest.read(bursts[0])
    individuals = sorted(rows["individual"].unique().to_list())
    held_out = individuals[:HELD_OUT]
    gallery = rows.filter(~pl.col("individual").is_in(held_out))
    root = tmp_path_factory.mktemp("identify_data")
    manifest.write(gallery, str(root / "gallery.parquet"))
    folder = root / "new_photos"
    folder.mkdir()
    truth, queries = {}, []
    for row in gallery.sort("image_id").gather_every(len(gallery) // 6).head(6).iter_rows(named=True):
        name = f"known_{row['image_id'].replace('/', '_')}.png"
        truth[name] = row["individual"]
        queries.append(row | {"image_id": name, "masked_uri": str(shutil.copy(row["masked_uri"], folder / name))})
    for individual in held_out:
        for k, row in enumerate(rows.filter(pl.col("individual") == individual).head(4).iter_rows(named=True)):
            name = f"new_{individual}_{k}.png"
            queries.append(row | {"image_id": name, "masked_uri": near_copy(bursts[1][individual], folder / name, k)})
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    queries.append(queries[-1] | {"image_id": "corrupt.png", "masked_uri": str(folder / "corrupt.png")})
    table = pl.DataFrame(queries, schema=rows.schema).with_columns(pl.col("masked_uri").alias("image_uri"))
    manifest.write(table, str(root / "new_photos.parquet"))
    return str(root / "gallery.parquet"), str(root / "new_photos.parquet"), truth, held_out


@pytest.mark.slow
def test_publish_stores_the_calibration_fitted_on_validation(published, bursts):
    settings, result = published
    version = tracking.get_version_by_alias(result.registered_name, tracking.CANDIDATE, settings)
    stored = open_set_calibration.load(version.tags["run_id"], version.tags, settings)
    assert set(stored.scorers) == {"global", "sift"} and set(stored.fusions) == {"none", "sift"}
    for mapped in stored.scorers.values():  # monotone probabilities
        assert np.all(np.diff(mapped.y) >= 0) and 0 <= min(mapped.y) <= max(mapped.y) <= 1
    points = [stored.fusion("sift").operating_point(n) for n in (1, 10, 100)]
    assert points == sorted(points)  # a larger gallery asks more of the best individual
    # An independent path: the logged pt2 program embeds the validation rows, the same calibration.
    val = images_to_evaluate(manifest.read(bursts[0]).filter(pl.col("split") == "val"), True, "val")
    uri = f"models:/{result.registered_name}/{result.version}"
    features = embed_rows(tracking.load_model(uri, settings), val.rows, eval_transform_for(uri, settings),
                          column=val.column)
    again = open_set_calibration.fit(features, val.rows, val.rows[val.column].to_list(), ("sift",))
    assert again.scorers["sift"] == stored.scorers["sift"]
    grid = np.linspace(-1, 1, 201)
    assert again.scorers["global"](grid) == pytest.approx(stored.scorers["global"](grid), abs=1e-3)


@pytest.mark.slow
def test_identify_ranks_known_flags_new_groups_them_reports_corrupt_and_reruns(published, photos, tmp_path,
                                                                               ray_local):
    settings, result = published
    gallery, folder, truth, held_out = photos
    job = IdentifyJob(model=f"{result.registered_name}@candidate", images=folder, gallery=gallery,
                      out=str(tmp_path / "out"), top_k=3, batch_size=8, shortlist=10)  # no threshold: the stored one
    first = run(job, settings, progress=lambda line: None)
    table = pl.read_parquet(tmp_path / "out" / "identifications.parquet")
    assert first.images == len(truth) + 8 + 1 and first.gallery_cache == "miss"
    assert first.threshold_source.startswith("operating point for 8 individuals, matcher sift")
    assert first.pairs_matched > 0 and first.pair_failures == 0

    failed = table.filter(pl.col("status") == "failed")
    assert failed["image_id"].to_list() == ["corrupt.png"] and "UnidentifiedImageError" in failed["error"][0]
    known = table.filter(pl.col("image_id").is_in(list(truth)))
    assert known["decision"].to_list() == ["known"] * len(truth)
    assert dict(zip(known["image_id"], known["top1_individual"], strict=True)) == truth  # every one ranked first
    assert all(len(set(ids)) == 3 for ids in known["topk_individuals"])  # top-k individuals, not images
    assert all(p[0] > first.threshold and p == sorted(p, reverse=True) for p in known["topk_probabilities"].to_list())
    new = table.filter(pl.col("image_id").str.starts_with("new_"))
    assert new.height == 8 and (new["decision"] == "new").all()
    assert not set(new["top1_individual"]) & set(held_out)  # never named as a gallery individual
    assert (new["top1_probability"] <= first.threshold).all()
    # The held-out individuals' photos grouped: each individual's photos in one proposed individual.
    individual = [name.rsplit("_", 1)[0] for name in new["image_id"]]
    assert new["group"].null_count() == 0 and adjusted_rand(individual, new["group"]) > 0.5, new["group"].to_list()
    assert (tmp_path / "out" / "identifications.csv").read_text().count("\n") == table.height + 1
    sheets = sorted(p.name for p in (tmp_path / "out" / "sheets").glob("*.png"))
    assert len(sheets) == table.height - 1  # one per identified photo
    groups = sorted(p.name for p in (tmp_path / "out" / "sheets" / "groups").iterdir())
    assert groups == sorted(f"{g}.png" for g in set(new["group"])) and first.groups == len(groups)
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("<tr class=") == table.height and "sheets/groups/new-1.png" in page

    # A rerun embeds and matches nothing again; the gallery is cached.
    again = run(job, settings, progress=lambda line: None)
    assert (again.embedded, again.skipped, again.gallery_cache) == (0, len(truth) + 8, "hit")
    rerun_table = pl.read_parquet(tmp_path / "out" / "identifications.parquet")
    assert rerun_table.drop("error").equals(table.drop("error"))

    # --threshold overrides the operating point; --matcher none decides on the global model alone.
    override = run(IdentifyJob(model=job.model, images=folder, gallery=gallery, out=str(tmp_path / "global"),
                               matcher="none", threshold=0.0, sheets=False), settings, progress=lambda line: None)
    decided = pl.read_parquet(tmp_path / "global" / "identifications.parquet").filter(pl.col("status") == "ok")
    assert override.threshold_source == "--threshold" and override.pairs_matched == 0
    assert decided["decision"].to_list() == np.where(decided["top1_probability"] > 0, "known", "new").tolist()


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


def test_model_names_and_errors():
    assert parse_model("reid-dve-tiger@production") == ("reid-dve-tiger", None, "production")
    assert parse_model("models:/reid-dve-tiger/3") == ("reid-dve-tiger", "3", None)
    with pytest.raises(ValueError, match="NAME@ALIAS"):
        parse_model("reid-dve-tiger")
