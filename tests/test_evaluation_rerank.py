"""Sparse k-reciprocal re-ranking against a dense transcription of the standard algorithm."""

from __future__ import annotations

import numpy as np
import pytest

from reid_core.evaluation import (
    evaluate_features,
    evaluate_rank,
    evaluate_reranked,
    iter_k_reciprocal_rerank,
    k_reciprocal_rerank,
    pairwise_distance,
)


def dense_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """The standard dense algorithm (Zhong et al. 2017, as in layumi / fast-reid / AER re_ranking)."""
    original_dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1), np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0
    )
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)
    query_num = q_g_dist.shape[0]
    all_num = q_g_dist.shape[0] + q_g_dist.shape[1]
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            half = int(np.around(k1 / 2.0)) + 1
            candidate_forward_k_neigh_index = initial_rank[candidate, :half]
            candidate_backward_k_neigh_index = initial_rank[candidate_forward_k_neigh_index, :half]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2.0 / 3 * len(
                candidate_k_reciprocal_index
            ):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = 1.0 * weight / np.sum(weight)
    original_dist = original_dist[:query_num,]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    invIndex = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(
                V[i, indNonZero[j]], V[indImages[j], indNonZero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


def clustered(seed, n_q, n_g, n_ids=12, dim=16, noise=0.8):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_ids, n_q + n_g)
    x = rng.standard_normal((n_ids, dim))[ids] + noise * rng.standard_normal((n_q + n_g, dim))
    return x[:n_q], x[n_q:], ids[:n_q], ids[n_q:]


@pytest.mark.parametrize(
    ("metric", "n_q", "n_g", "k1", "k2", "lam"),
    [
        ("euclidean", 25, 120, 20, 6, 0.3),
        ("cosine", 25, 120, 20, 6, 0.3),
        ("euclidean", 10, 40, 5, 1, 0.5),
        ("sqeuclidean", 8, 30, 7, 3, 0.1),
        ("euclidean", 4, 10, 20, 6, 0.3),  # fewer items than k1 + 1
    ],
)
def test_matches_dense_reference(metric, n_q, n_g, k1, k2, lam):
    q, g, _, _ = clustered(n_q + n_g, n_q, n_g)
    dist = {k: pairwise_distance(a, b, metric).numpy() for k, (a, b) in {"qg": (q, g), "qq": (q, q), "gg": (g, g)}.items()}
    ref = dense_re_ranking(dist["qg"], dist["qq"], dist["gg"], k1=k1, k2=k2, lambda_value=lam)
    for chunk in (None, 3):
        ours = k_reciprocal_rerank(q, g, metric=metric, k1=k1, k2=k2, lambda_value=lam, chunk_size=chunk)
        assert ours.shape == (n_q, n_g) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, atol=2e-6, rtol=0)


def chain_problem(seed=0):
    """Identities spread along a line segment: far ends of the same identity are hard to match
    directly but reachable through shared neighbours, which is what re-ranking exploits."""
    rng = np.random.default_rng(seed)
    n_ids, per, dim = 30, 12, 32
    centres = 0.5 * rng.standard_normal((n_ids, dim))
    directions = rng.standard_normal((n_ids, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    ids = np.repeat(np.arange(n_ids), per)
    t = rng.uniform(-1, 1, len(ids))
    x = centres[ids] + 1.2 * t[:, None] * directions[ids] + 0.5 * rng.standard_normal((len(ids), dim))
    is_query = np.zeros(len(ids), bool)
    is_query[::per] = is_query[1::per] = True
    return x[is_query], x[~is_query], ids[is_query], ids[~is_query]


def test_rerank_improves_map_where_it_should():
    q, g, qi, gi = chain_problem()
    before = evaluate_features(q, g, qi, gi, metric="euclidean")
    after = evaluate_reranked(q, g, qi, gi, metric="euclidean")
    assert before.mAP == pytest.approx(0.7201, abs=1e-3)
    assert after.mAP > before.mAP + 0.15


def test_evaluate_reranked_equals_dense_matrix_evaluation():
    q, g, qi, gi = clustered(1, 20, 90)
    cams_q, cams_g = qi % 2, gi % 3
    dense = k_reciprocal_rerank(q, g, k1=10, k2=3)
    expected = evaluate_rank(dense, qi, gi, cams_q, cams_g)
    got = evaluate_reranked(q, g, qi, gi, cams_q, cams_g, k1=10, k2=3, chunk_size=7)
    assert got.mAP == pytest.approx(expected.mAP, abs=1e-12)
    blocks = list(iter_k_reciprocal_rerank(q, g, k1=10, k2=3, chunk_size=7))
    assert [(a, b) for a, b, _ in blocks] == [(0, 7), (7, 14), (14, 20)]


def test_dense_output_is_refused_above_the_cap():
    q, g, _, _ = clustered(2, 10, 30)
    with pytest.raises(MemoryError, match="iter_k_reciprocal_rerank"):
        k_reciprocal_rerank(q, g, max_dense_bytes=10 * 30 * 4 - 1)
    with pytest.raises(ValueError, match="k1 >= 1"):
        k_reciprocal_rerank(q, g, k1=0)
