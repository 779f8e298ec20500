"""Model evaluation re-ranked by local-feature matching (reid_core.lifecycle.local_rerank): on a case built so
that the global model ranks an impostor first, the calibrated SIFT re-ranking puts the true individual first."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from matching_support import tiger_photo
from PIL import Image

from reid_core.evaluation.calibration import OpenSetCalibration, fused_distance, rank_individuals
from reid_core.evaluation.protocols import evaluate_manifest
from reid_core.lifecycle.local_rerank import LocalRerank, fused_metrics
from reid_core.lifecycle.open_set_calibration import fit, matcher_options
from reid_core.pipelines.match import match_pairs_local

INDIVIDUALS = {"val": (10, 11, 12), "test": (0, 1, 2, 3)}


def misleading_features(individuals: np.ndarray, roles: np.ndarray) -> np.ndarray:
    """Global embeddings built to mislead: a query looks exactly like the *next* individual's gallery photos,
    and every photo of one individual alike otherwise (so the global model ranks an impostor first)."""
    names = sorted(set(individuals.tolist()))
    code = np.array([names.index(i) for i in individuals])
    shifted = np.where(roles == "query", (code + 1) % len(names), code)
    rng = np.random.default_rng(0)
    return np.eye(len(names))[shifted] + 0.01 * rng.standard_normal((len(code), len(names)))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> pl.DataFrame:
    """Background-free tiger flanks written as files, each individual 1 query + 2 gallery photos: validation
    3 individuals, test 4. The global model misleads on both splits alike, so the calibration fitted on
    validation knows how little its similarity says."""
    folder = tmp_path_factory.mktemp("rerank")
    rows = []
    for split, individuals in INDIVIDUALS.items():
        for individual in individuals:
            for index in range(3):
                path = folder / f"{split}-{individual}-{index}.png"
                Image.fromarray(tiger_photo(individual, index)).save(path)
                role = "query" if index == 0 else "gallery"
                rows.append({"image_id": path.stem, "image_uri": str(path), "species": "tiger", "split": split,
                             "individual": f"t{individual}", "entity": f"t{individual}",
                             "role": role})
    return pl.DataFrame(rows)


def embed(rows: pl.DataFrame, column: str) -> np.ndarray:
    return misleading_features(rows["individual"].to_numpy(), rows["role"].to_numpy())


def test_fused_distance_ranks_matched_pairs_by_probability_then_the_rest_by_similarity():
    similarity = np.array([[0.9, 0.2, 0.5, 0.8]])
    fused = np.array([[0.3, 0.7, 0.7, np.nan]])
    order = np.argsort(fused_distance(similarity, fused), axis=1)[0]
    # 0.7 twice: the more similar (0.5) first; then 0.3; the unmatched pair last despite similarity 0.8.
    assert order.tolist() == [2, 1, 0, 3]


def test_local_rerank_puts_the_true_individual_first_where_the_global_model_does_not(photos, single_torch_thread):
    test = photos.filter(pl.col("split") == "test")
    global_only = evaluate_manifest(embed(test, "image_uri"), test, "disjoint", split=None)
    assert global_only["rank1"] == 0.0  # built so: every query's nearest photos are the next individual's

    metrics = fused_metrics(embed, photos, use_masked=False, rerank=LocalRerank("sift", shortlist=50))
    assert metrics["fused.rank1"] == 1.0
    assert metrics["fused.mAP"] > global_only["mAP"] + 0.5
    assert metrics["fused.pairs_matched"] == 12 * 11 / 2  # every pair of the 12 test photos, once

    # identify's path: the matching stage scores each query against every gallery photo, the calibration
    # fitted on validation fuses, and identify's ranking of individuals puts the true one first every time.
    val = photos.filter(pl.col("split") == "val")
    calibration = fit(embed(val, "image_uri"), val, val["image_uri"].to_list(), ("sift",))
    queries = test.filter(pl.col("role") == "query")
    gallery = test.filter(pl.col("role") == "gallery")
    features = embed(pl.concat([queries, gallery]), "image_uri")
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    similarity = features[:4] @ features[4:].T
    pairs = pl.DataFrame({"query_id": np.repeat(queries["image_id"].to_numpy(), 8),
                          "gallery_id": np.tile(gallery["image_id"].to_numpy(), 4),
                          "query_uri": np.repeat(queries["image_uri"].to_numpy(), 8),
                          "gallery_uri": np.tile(gallery["image_uri"].to_numpy(), 4)})
    matched = match_pairs_local(pairs, "sift")  # the matching stage's worker, in-process (on Ray: test_match_stage)
    assert matched["status"].to_list() == ["ok"] * 32
    local = matched["score"].to_numpy().reshape(4, 8)
    fused = (calibration.probability("global", similarity) + calibration.probability("sift", local)) / 2
    names, codes = np.unique(gallery["individual"].to_numpy(), return_inverse=True)
    top, _, _ = rank_individuals(fused, similarity, codes, len(names), top_k=1)
    assert names[top[:, 0]].tolist() == queries["individual"].to_list()
    assert names[np.argmax(similarity, axis=1) // 2].tolist() != queries["individual"].to_list()


def test_rerank_options_are_checked():
    with pytest.raises(ValueError, match="re-ranking needs one of sift"):
        LocalRerank("none")
    with pytest.raises(ValueError, match="shortlist must hold >= 1"):
        LocalRerank("sift", shortlist=0)


def test_a_calibration_keeps_the_matcher_options_it_was_fitted_with(photos, single_torch_thread):
    # identify matches with the options (e.g. LightGlue weights) the stored calibration was fitted with.
    val = photos.filter(pl.col("split") == "val")
    features = embed(val, "image_uri")
    uris = val["image_uri"].to_list()
    options = {"sift": {"num_features": 256, "ratio": 0.8}}
    calibration = OpenSetCalibration.from_dict(fit(features, val, uris, ("sift",), options=options).to_dict())
    assert matcher_options(calibration, "sift") == options["sift"]
    default = fit(features, val, uris, ("sift",))
    assert matcher_options(default, "sift") == {}
    # Fewer keypoints give fewer verified matches: the options reached the matcher.
    assert calibration.scorers["sift"].x[-1] < default.scorers["sift"].x[-1]
