"""evaluate_features (block by block, from features) equals evaluate_rank on the full matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_evaluation_ranking import assert_matches, reference_eval_market1501

from reid_core.evaluation import evaluate_features, evaluate_rank, pairwise_distance
from reid_core.evaluation.chunked import torch_threads


def clustered(rng, n_q, n_g, n_ids, dim, noise):
    """Query and gallery features around shared per-identity centres."""
    centres = rng.standard_normal((n_ids, dim))
    ids = rng.integers(0, n_ids, n_q + n_g)
    x = centres[ids] + noise * rng.standard_normal((n_q + n_g, dim))
    return x[:n_q], x[n_q:], ids[:n_q], ids[n_q:]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "sqeuclidean"])
def test_features_equal_full_matrix_float64(metric):
    rng = np.random.default_rng(0)
    q, g, qi, gi = clustered(rng, 60, 300, 15, 16, 1.0)
    qc, gc = rng.integers(0, 4, 60), rng.integers(0, 4, 300)
    full = evaluate_rank(pairwise_distance(q, g, metric).numpy(), qi, gi, qc, gc, 50)
    for chunk in (None, 1, 13, 60):
        r = evaluate_features(q, g, qi, gi, qc, gc, metric=metric, chunk_size=chunk)
        assert r.mAP == pytest.approx(full.mAP, abs=1e-9)
        np.testing.assert_allclose(r.cmc, full.cmc, atol=1e-9, rtol=0)
        assert r.mINP == pytest.approx(full.mINP, abs=1e-9)
        assert r.n_valid_queries == full.n_valid_queries
    assert 0.3 < full.mAP < 0.99  # a non-trivial problem


def test_exact_ties_from_integer_features():
    """Small integer features give exact squared distances, hence many exact ties."""
    rng = np.random.default_rng(1)
    q = rng.integers(0, 2, (40, 4)).astype(np.float64)
    g = rng.integers(0, 2, (200, 4)).astype(np.float64)
    qi, gi = rng.integers(0, 5, 40), rng.integers(0, 5, 200)
    qc, gc = rng.integers(0, 2, 40), rng.integers(0, 2, 200)
    d = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    assert len(np.unique(d)) <= 5
    ref = reference_eval_market1501(d, qi, gi, qc, gc, 50)
    for chunk in (3, 40):
        assert_matches(evaluate_features(q, g, qi, gi, qc, gc, metric="sqeuclidean", chunk_size=chunk), ref, 1e-12)


def test_float32_torch_inputs_and_string_ids_without_cameras():
    rng = np.random.default_rng(2)
    q, g, qi, gi = clustered(rng, 30, 90, 6, 8, 0.8)
    names = np.array(list("abcdef"))
    qt, gt = torch.from_numpy(q.astype(np.float32)), torch.from_numpy(g.astype(np.float32))
    r = evaluate_features(qt, gt, names[qi], names[gi], metric="cosine", device="cpu")
    full = evaluate_rank(pairwise_distance(qt, gt, "cosine").numpy(), qi, gi)
    assert r.mAP == pytest.approx(full.mAP, abs=1e-12)
    assert r.n_valid_queries == 30


def test_num_threads_is_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    rng = np.random.default_rng(3)
    q, g, qi, gi = clustered(rng, 5, 5, 2, 4, 0.5)
    evaluate_features(q, g, qi, gi, num_threads=1)
    assert torch.get_num_threads() == before


def test_feature_errors():
    x = np.zeros((3, 4))
    ids = np.arange(3)
    with pytest.raises(ValueError, match="4-d but gallery features are 5-d"):
        evaluate_features(x, np.zeros((3, 5)), ids, ids)
    with pytest.raises(ValueError, match="ids"):
        evaluate_features(x, x, ids[:2], ids)
    bad = x.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        evaluate_features(bad, x, ids, ids)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_features(x, x, ids, ids, metric="manhattan")
