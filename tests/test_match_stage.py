"""The matching row stage (reid_core.pipelines.match) on Ray: per-pair statuses for a corrupt and a blank
image while the job goes on, features cached per image, and a rerun that processes no pair."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from PIL import Image

from reid_core.data import synthetic
from reid_core.matching import store
from reid_core.pipelines.match import match_pairs_local, run_match_stage
from reid_core.segmentation.masking import MaskingConfig, apply_mask

pytestmark = pytest.mark.slow
SEED, SIZE = 7, 128


@pytest.fixture
def photos(tmp_path) -> dict[str, str]:
    """Two tigers' left flanks (two photos of tiger 0), a blank masked image and a corrupt file."""
    scenes = synthetic.scene_textures(seed=SEED, count=2, size=SIZE)
    uris = {}
    for name, (individual, index) in {"t0a": (0, 0), "t0b": (0, 1), "t1": (1, 1)}.items():
        r = synthetic.render_image("tiger", individual, index, "left", scenes[index % 2], seed=SEED, occlusion=0)
        uris[name] = str(tmp_path / f"{name}.png")
        Image.fromarray(apply_mask(r.image, r.mask, MaskingConfig(crop=True))).save(uris[name])
    uris["blank"] = str(tmp_path / "blank.png")
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(uris["blank"])
    uris["corrupt"] = str(tmp_path / "corrupt.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    return uris


def pairs_of(uris: dict[str, str]) -> pl.DataFrame:
    gallery = ["t0b", "t1", "blank", "corrupt"]
    return pl.DataFrame({"query_id": ["t0a"] * 4, "gallery_id": gallery, "query_uri": [uris["t0a"]] * 4,
                         "gallery_uri": [uris[g] for g in gallery]})


def test_match_stage_reports_per_pair_and_a_rerun_skips_finished_pairs(ray_local, photos, tmp_path):
    pairs = pairs_of(photos)
    out = str(tmp_path / "matches")
    first = run_match_stage(pairs, "sift", out=out, actors=1, batch_size=2)
    results = first.results
    assert results["gallery_id"].to_list() == ["t0b", "t1", "blank", "corrupt"]  # the input's order
    status = dict(zip(results["gallery_id"], results["status"], strict=True))
    assert status == {"t0b": "ok", "t1": "ok", "blank": "no_keypoints", "corrupt": "unreadable"}
    score = dict(zip(results["gallery_id"], results["score"], strict=True))
    assert score["t0b"] > 2 * score["t1"] and score["blank"] == 0.0 and score["corrupt"] is None
    corrupt = results.filter(pl.col("gallery_id") == "corrupt").row(0, named=True)
    assert "gallery image" in corrupt["error"] and corrupt["matches"] == 0
    same = results.filter(pl.col("gallery_id") == "t0b").row(0, named=True)
    assert same["matches"] == same["score"] == len(same["kp_query"]) == len(same["kp_gallery"])
    assert len(same["kp_query"][0]) == 2
    assert first.report.processed == 4 and first.report.skipped == 0

    # Features were extracted once per image and kept: the four readable images have a cache file each.
    cached = list((tmp_path / "matches" / "features").rglob("*.npz"))
    assert len(cached) == 4  # t0a (once, for four pairs), t0b, t1, blank

    again = run_match_stage(pairs, "sift", out=out, actors=1, batch_size=2)
    assert again.report.processed == 0 and again.report.skipped == 4
    assert again.results.drop("kp_query", "kp_gallery").equals(results.drop("kp_query", "kp_gallery"))

    # The in-process loop gives the same scores (seeded RANSAC), reading the features the stage cached.
    local = match_pairs_local(pairs, "sift", features_cache=str(tmp_path / "matches" / "features"))
    assert local["score"].to_list() == results["score"].to_list()


def test_features_are_read_back_from_the_cache(photos, tmp_path):
    from reid_core.matching.registry import get_matcher

    first = store.FeatureStore(get_matcher("sift"))
    fresh = first.get(photos["t0a"], str(tmp_path / "features"))
    second = store.FeatureStore(get_matcher("sift"))
    again = second.get(photos["t0a"], str(tmp_path / "features"))
    assert first.extracted == 1 and second.extracted == 0
    np.testing.assert_array_equal(fresh.features.descriptors, again.features.descriptors)
    assert second.get(photos["corrupt"], None).status == store.UNREADABLE
    assert second.get(str(tmp_path / "missing.png"), None).status == store.FAILED
