"""The synthetic re-ID data: contract, determinism, masks, sides, scenes, and that identities are learnable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from reid_core.cli import synthetic as synthetic_cli
from reid_core.data import files as rio
from reid_core.data import manifest
from reid_core.data import synthetic as syn

SMALL = dict(species=("tiger", "yak"), individuals=6, images_per_individual=4, size=64, seed=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    out = tmp_path_factory.mktemp("synthetic_small")
    return out, syn.generate(out, **SMALL, workers=1)


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("synthetic_medium")
    return syn.generate(out, species=("tiger", "yak", "elephant"), individuals=12, images_per_individual=8,
                        size=64, seed=11, workers=1)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _png(uri: str) -> np.ndarray:
    return np.asarray(Image.open(uri))


def test_manifest_contract_and_counts(small):
    out, df = small
    assert len(df) == 2 * 6 * 4
    assert syn.PART_NAMES == ("background", "head", "body", "front_legs", "hind_legs", "tail")
    assert list(df.columns[: len(manifest.CORE_SCHEMA)]) == list(manifest.CORE_SCHEMA)
    for column in ("mask_uri", "ref_mask_uri", "parts_uri", "scene", "seg_method", "occluded"):
        assert column in df.columns
    read = manifest.read(str(out / "manifest.parquet"),
                         validate_kwargs={"disjoint": syn.SPLIT_DISJOINT, "check_files": True})
    assert read.equals(df)
    assert df["image_id"][0] == "tiger/0000/000"
    assert df["image_id"].n_unique() == len(df)
    assert df["seg_method"].null_count() == len(df)
    assert (df["mask_uri"] == df["ref_mask_uri"]).all()
    assert df["image_uri"][0] == str(out.resolve() / "tiger" / "images" / "tiger_0000_000.png")
    assert all(Path(u).is_absolute() and Path(u).exists() for u in df["image_uri"].to_list() + df["parts_uri"].to_list())
    assert (df["entity"] == df["individual"] + "_" + df["side"]).all()
    assert set(df["camera"]) <= {f"cam{i}" for i in range(syn.DEFAULT_CAMERAS)}
    assert df["scene"].str.contains(r"^scene_\d\d$").all()

    # 6 individuals per species: 1 val, 2 test, 3 train; splits disjoint by individual
    per_split = df.group_by("species", "split").agg(pl.col("individual").n_unique()).sort("species", "split")
    assert per_split.rows() == [("tiger", "test", 2), ("tiger", "train", 3), ("tiger", "val", 1),
                                ("yak", "test", 2), ("yak", "train", 3), ("yak", "val", 1)]
    assert df.group_by("individual").agg(pl.col("split").n_unique())["split"].max() == 1

    # roles only in val/test; per entity (2 images per side) one query and one gallery image
    assert df.filter(pl.col("split") == "train")["role"].null_count() == len(df.filter(pl.col("split") == "train"))
    held_out = df.filter(pl.col("split") != "train")
    assert held_out["role"].null_count() == 0
    roles = held_out.group_by("entity").agg((pl.col("role") == "query").sum().alias("q"), pl.len().alias("n"))
    assert roles["q"].to_list() == [1] * len(roles) and roles["n"].to_list() == [2] * len(roles)

    # frames increase in manifest order per species and camera
    for (_, _), group in df.group_by("species", "camera"):
        frames = group["frame"].to_list()
        assert frames == sorted(frames) and len(set(frames)) == len(frames)


def test_every_query_has_a_gallery_match_from_another_camera(medium):
    held_out = medium.filter(pl.col("split") != "train")
    queries = held_out.filter(pl.col("role") == "query")
    gallery = held_out.filter(pl.col("role") == "gallery")
    for q in queries.iter_rows(named=True):
        others = gallery.filter((pl.col("entity") == q["entity"]) & (pl.col("camera") != q["camera"]))
        assert len(others) >= 1, q["image_id"]
    # 12 individuals: 1 val + 4 test; 8 images -> 4 per side -> 1 query each
    assert held_out["individual"].n_unique() == 3 * 5
    assert len(queries) == 3 * 5 * 2


def test_same_seed_same_bytes_whatever_the_workers_and_rerun_is_safe(small, tmp_path):
    out, df = small
    before = _files(out)
    again = syn.generate(out, **SMALL, workers=2)  # rerun into the same folder, with a process pool
    assert again.equals(df)
    assert _files(out) == before
    assert not list(out.rglob("*.tmp-*"))

    other = syn.generate(tmp_path / "other", **{**SMALL, "seed": 4}, workers=1)
    changed = _files(tmp_path / "other")
    images = [k for k in before if "/images/" in k]
    assert len(images) == 48
    assert sum(before[k] != changed[k] for k in images) == 48
    assert not other.drop("image_uri", "mask_uri", "ref_mask_uri", "parts_uri").equals(
        df.drop("image_uri", "mask_uri", "ref_mask_uri", "parts_uri"))


def test_masks_match_the_drawn_image(small):
    _, df = small
    scenes = syn.scene_textures(SMALL["seed"], syn.DEFAULT_SCENES, SMALL["size"])
    occluded = 0
    for row in df.iter_rows(named=True):
        image, mask, parts = _png(row["image_uri"]), _png(row["mask_uri"]), _png(row["parts_uri"])
        assert image.shape == (64, 64, 3) and mask.shape == parts.shape == (64, 64)
        assert Image.open(row["mask_uri"]).mode == "L" and Image.open(row["parts_uri"]).mode == "L"
        assert set(np.unique(mask)) == {0, 255}
        assert set(np.unique(parts)) <= set(range(len(syn.PART_NAMES)))
        assert np.array_equal(parts > 0, mask > 0)
        assert (mask > 0).sum() > 150
        background = scenes[int(row["scene"].removeprefix("scene_"))]
        outside = mask == 0
        differs = np.any(image != background, axis=-1) & outside
        if row["occluded"]:
            occluded += 1
            assert differs.sum() > 0  # the vegetation in front
        else:
            assert differs.sum() == 0
            assert {syn.HEAD, syn.BODY, syn.FRONT_LEGS, syn.HIND_LEGS, syn.TAIL} <= set(np.unique(parts).tolist())
        inside = mask > 0
        assert np.abs(image[inside].astype(int) - background[inside].astype(int)).sum(-1).mean() > 20
    assert 0 < occluded < len(df)


def test_occluders_are_cut_from_the_masks():
    background = syn.scene_textures(0, 4, 96)[2]
    hits = 0
    for index in range(12):
        clean = syn.render_image("elephant", 5, index, "left", background, seed=0, occlusion=0.0)
        blocked = syn.render_image("elephant", 5, index, "left", background, seed=0, occlusion=1.0)
        assert not clean.occluded
        if not blocked.occluded:  # the occluder would have hidden more than half of the animal
            assert np.array_equal(blocked.image, clean.image)
            continue
        hits += 1
        assert np.array_equal(blocked.parts, np.where(blocked.occluder, 0, clean.parts))
        assert (clean.mask & blocked.occluder).sum() > 0  # it hides part of the animal
        assert blocked.mask.sum() >= 0.5 * clean.mask.sum()
        assert np.array_equal(blocked.image[~blocked.occluder], clean.image[~blocked.occluder])
    assert hits >= 8


def test_right_side_is_mirrored_with_its_own_pattern(small):
    _, df = small
    for row in df.iter_rows(named=True):
        parts = _png(row["parts_uri"])
        head_x = np.nonzero(parts == syn.HEAD)[1].mean()
        body_x = np.nonzero(parts == syn.BODY)[1].mean()
        assert (head_x < body_x) == (row["side"] == "left"), row["image_id"]
    sides = df.group_by("individual").agg(pl.col("side").sort().unique(maintain_order=True))
    assert all(s == ["left", "right"] for s in sides["side"].to_list())
    for species in syn.SPECIES:
        sig = syn.individual_signature(species, 0, 3)
        assert sig["left"] != sig["right"]
        assert sig["left"] != syn.individual_signature(species, 1, 3)["left"]

    # the same pose drawn for the other side: mirrored silhouette, different flank
    background = np.zeros((96, 96, 3), np.uint8)
    left = syn.render_image("tiger", 2, 0, "left", background, seed=1, occlusion=0.0)
    right = syn.render_image("tiger", 2, 0, "right", background, seed=1, occlusion=0.0)
    assert abs(int(left.mask.sum()) - int(right.mask.sum())) < 0.1 * left.mask.sum()
    assert not np.array_equal(left.image, right.image)


def _scene_predicts_individual(df: pl.DataFrame) -> float:
    """Leave-one-out: share of images whose scene's most frequent other individual is their own."""
    hits = []
    for row in df.iter_rows(named=True):
        others = df.filter((pl.col("scene") == row["scene"]) & (pl.col("image_id") != row["image_id"])
                           & (pl.col("species") == row["species"]))
        counts = Counter(others["individual"].to_list())
        hits.append(bool(counts) and counts.most_common(1)[0][0] == row["individual"])
    return float(np.mean(hits))


def test_background_identifies_individuals_in_train_but_not_in_test(medium):
    train = medium.filter(pl.col("split") == "train")
    top3 = (train.group_by("individual", "scene").len().sort("len", descending=True)
            .group_by("individual").agg(pl.col("len").head(3).sum() / pl.col("len").sum()))
    assert top3["len"].mean() >= 0.85 and top3["len"].min() >= 0.6
    held_out = medium.filter(pl.col("split") != "train")
    # val/test: an individual never appears twice in one scene, so the scene says nothing about it
    assert held_out.group_by("individual", "scene").len()["len"].max() == 1
    assert _scene_predicts_individual(held_out) == 0.0
    assert _scene_predicts_individual(train) >= 0.5


def _features(rows: list[dict], masked: bool) -> np.ndarray:
    feats = []
    for row in rows:
        image = _png(row["image_uri"]).astype(np.float32)
        mask = _png(row["mask_uri"]) > 0
        if masked:  # the animal's bounding box, background zeroed, at a fixed size
            ys, xs = np.nonzero(mask)
            crop = (image * mask[..., None])[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
        else:
            crop = image
        f = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize((24, 12), Image.BILINEAR), np.float32).ravel()
        f -= f.mean()
        feats.append(f / (np.linalg.norm(f) + 1e-6))
    return np.stack(feats)


def _loo_rank1(feats: np.ndarray, entities: np.ndarray) -> float:
    sim = feats @ feats.T
    np.fill_diagonal(sim, -np.inf)
    return float(np.mean(entities[sim.argmax(1)] == entities))


def test_identities_are_learnable_from_the_animal_not_its_colour_or_background(medium):
    """Leave-one-out nearest neighbour among held-out images (same species): masked pixels find the same
    entity far above chance; the whole image (background included) and the animal's mean colour do not."""
    for species in ("tiger", "yak", "elephant"):
        sub = medium.filter((pl.col("species") == species) & (pl.col("split") != "train"))
        rows, entities = list(sub.iter_rows(named=True)), sub["entity"].to_numpy()
        chance = 3 / (len(sub) - 1)  # 3 other images of the same entity among the rest
        masked = _loo_rank1(_features(rows, masked=True), entities)
        full = _loo_rank1(_features(rows, masked=False), entities)
        colours = np.stack([_png(r["image_uri"])[_png(r["mask_uri"]) > 0].mean(0) for r in rows])
        colours = (colours - colours.mean(0)) / (np.linalg.norm(colours - colours.mean(0), axis=1, keepdims=True) + 1e-6)
        colour = _loo_rank1(colours, entities)
        print(f"{species}: masked {masked:.2f} full {full:.2f} colour {colour:.2f} chance {chance:.2f}")
        # observed with seed 11 (masked / full / colour): tiger 0.70 / 0.05 / 0.07, yak 0.97 / 0.05 / 0.05,
        # elephant 0.42 / 0.00 / 0.15
        assert masked >= {"tiger": 0.5, "yak": 0.75, "elephant": 0.3}[species]
        assert masked >= 3 * chance
        assert masked > full + 0.2
        assert masked > colour + 0.1


def test_cli_writes_manifest_and_prints_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    code = synthetic_cli.main(["--out", str(out), "--species", "elephant", "--individuals", "5",
                               "--images-per-individual", "3", "--size", "48", "--seed", "2", "--workers", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "elephant" in printed and "wrote 15 images" in printed
    df = manifest.read(str(out / "manifest.parquet"))
    assert sorted(df["split"].unique()) == ["test", "train", "val"]
    assert len(list((out / "elephant" / "parts").glob("*.png"))) == 15
    # an entity with a single image (3 images over two sides) is a gallery distractor, never an unanswerable query
    held_out = df.filter(pl.col("split") != "train").group_by("entity").agg(pl.len(), (pl.col("role") == "query").sum())
    assert held_out.filter(pl.col("len") == 1)["role"].to_list() == [0] * len(held_out.filter(pl.col("len") == 1))
    assert held_out.filter(pl.col("len") == 1).height >= 1
    assert held_out.filter(pl.col("len") > 1)["role"].min() == 1
    assert synthetic_cli.main(["--out", str(out), "--species", "wolf"]) == 2
    assert "unknown synthetic species 'wolf'" in capsys.readouterr().err


def test_bad_arguments_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="leave none for training"):
        syn.generate(tmp_path, species=("tiger",), individuals=2, images_per_individual=2, size=32)
    with pytest.raises(ValueError, match="use one of tiger, yak, elephant"):
        syn.generate(tmp_path, species=("lynx",), individuals=4, images_per_individual=2, size=32)


def test_writes_to_s3(s3_bucket):
    uri = f"{s3_bucket}/synthetic"
    df = syn.generate(uri, species=("yak",), individuals=3, images_per_individual=4, size=32, seed=0, workers=1)
    assert df["image_uri"][0] == f"{uri}/yak/images/yak_0000_000.png"
    read = manifest.read(f"{uri}/manifest.parquet", validate_kwargs={"check_files": True})
    assert len(read) == 12
    mask = np.asarray(rio.read_image(read["mask_uri"][5], mode="L"))
    parts = np.asarray(rio.read_image(read["parts_uri"][5], mode="L"))
    assert np.array_equal(mask > 0, parts > 0) and mask.max() == 255
