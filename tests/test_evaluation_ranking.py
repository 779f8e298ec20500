"""evaluate_rank against a literal per-query implementation of fast-reid's eval_market1501."""

from __future__ import annotations

import numpy as np
import pytest

import reid_core.evaluation.ranking as ranking
from reid_core.evaluation import evaluate_rank


def reference_eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, *, policy="skip", ap="standard"):
    """fast-reid ``eval_market1501`` (Python path), one query at a time, with a stable argsort.

    Returns (mAP, cmc, mINP, n_valid). ``policy="zero"`` counts queries without a positive as 0;
    ``ap="trapezoid"`` is layumi's compute_mAP AP.
    """
    num_q, num_g = distmat.shape
    all_cmc, all_ap, all_inp = [], [], []
    n_valid = 0
    for q in range(num_q):
        order = np.argsort(distmat[q], kind="stable")
        if q_camids is None:
            keep = np.ones(num_g, bool)
        else:
            keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw_cmc = (g_pids[order] == q_pids[q]).astype(np.int64)[keep]
        if not np.any(raw_cmc):
            if policy == "zero":
                all_cmc.append(np.zeros(max_rank))
                all_ap.append(0.0)
                all_inp.append(0.0)
            continue
        n_valid += 1
        cmc = raw_cmc.cumsum()
        pos_idx = np.where(raw_cmc == 1)[0]
        all_inp.append(cmc[pos_idx.max()] / (pos_idx.max() + 1.0))
        cmc[cmc > 1] = 1
        cmc = np.concatenate([cmc, np.full(max(0, max_rank - len(cmc)), cmc[-1])])  # gallery < max_rank
        all_cmc.append(cmc[:max_rank])
        num_rel = raw_cmc.sum()
        if ap == "standard":
            tmp_cmc = raw_cmc.cumsum() / (np.arange(len(raw_cmc)) + 1.0) * raw_cmc
            all_ap.append(tmp_cmc.sum() / num_rel)
        else:
            value = 0.0
            for i, row in enumerate(pos_idx):
                precision = (i + 1) / (row + 1)
                old_precision = i / row if row != 0 else 1.0
                value += (old_precision + precision) / 2 / num_rel
            all_ap.append(value)
    if not all_ap:
        return None
    return float(np.mean(all_ap)), np.asarray(all_cmc).mean(0), float(np.mean(all_inp)), n_valid


def random_problem(rng, n_q, n_g, n_ids, n_cams, ties: bool):
    q_ids, g_ids = rng.integers(0, n_ids, n_q), rng.integers(0, n_ids, n_g)
    q_cams, g_cams = rng.integers(0, n_cams, n_q), rng.integers(0, n_cams, n_g)
    d = rng.integers(0, 6, (n_q, n_g)).astype(np.float64) if ties else rng.random((n_q, n_g))
    return d, q_ids, g_ids, q_cams, g_cams


def assert_matches(result, ref, tol=1e-9):
    m_ap, cmc, m_inp, n_valid = ref
    assert result.n_valid_queries == n_valid
    assert result.mAP == pytest.approx(m_ap, abs=tol)
    np.testing.assert_allclose(result.cmc, cmc, atol=tol, rtol=0)
    assert result.mINP == pytest.approx(m_inp, abs=tol)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_problems(seed, ties):
    rng = np.random.default_rng(seed)
    d, qi, gi, qc, gc = random_problem(rng, 40, 250, 12, 3, ties)
    ref = reference_eval_market1501(d, qi, gi, qc, gc, 50)
    for chunk in (1, 7, 40):
        assert_matches(evaluate_rank(d, qi, gi, qc, gc, 50, chunk_size=chunk), ref)


@pytest.mark.parametrize("n_bins", [1, 2, 64])
def test_exact_with_coarse_bins_infinities_and_tiny_join_batches(monkeypatch, n_bins):
    """Every item in one bin (or few): the exact same-bin comparison path carries the whole result."""
    monkeypatch.setattr(ranking, "default_n_bins", lambda n: n_bins)
    monkeypatch.setattr(ranking, "_MAX_JOIN_PAIRS", 5)
    rng = np.random.default_rng(n_bins)
    d, qi, gi, qc, gc = random_problem(rng, 25, 120, 6, 3, ties=True)
    d[rng.random(d.shape) < 0.1] = np.inf
    d[rng.random(d.shape) < 0.05] = -np.inf
    d[3] = 2.0  # a row of identical distances
    ref = reference_eval_market1501(d, qi, gi, qc, gc, 20)
    assert_matches(evaluate_rank(d, qi, gi, qc, gc, 20, chunk_size=6), ref)


def test_float32_distances_and_trapezoid_and_zero_policy():
    rng = np.random.default_rng(7)
    d, qi, gi, qc, gc = random_problem(rng, 30, 90, 20, 2, ties=False)
    d = d.astype(np.float32)
    for ap in ("standard", "trapezoid"):
        for policy in ("skip", "zero"):
            ref = reference_eval_market1501(d, qi, gi, qc, gc, 10, policy=policy, ap=ap)
            got = evaluate_rank(d, qi, gi, qc, gc, 10, no_positive=policy, ap_mode=ap)
            assert_matches(got, ref)
            assert got.n_queries == 30


def test_hand_computed_ap_positives_at_ranks_1_and_3():
    d = np.array([[0.1, 0.2, 0.3, 0.4]])
    r = evaluate_rank(d, np.array([7]), np.array([7, 1, 7, 2]), max_rank=4)
    assert r.mAP == pytest.approx((1 / 1 + 2 / 3) / 2)
    np.testing.assert_array_equal(r.cmc, [1, 1, 1, 1])
    assert r.mINP == pytest.approx(2 / 3)
    # layumi/AER trapezoid: hit 1: (1 + 1)/2; hit 2: (precision before = 1/2 + at = 2/3)/2, each / 2 hits
    t = evaluate_rank(d, np.array([7]), np.array([7, 1, 7, 2]), max_rank=4, ap_mode="trapezoid")
    assert t.mAP == pytest.approx((1.0 + (1 / 2 + 2 / 3) / 2) / 2)


def test_same_camera_same_id_is_removed_other_camera_kept():
    d = np.array([[0.1, 0.2, 0.3]])
    # gallery 0: same id, same camera -> junk; gallery 1: other id; gallery 2: same id, other camera
    r = evaluate_rank(d, np.array([5]), np.array([5, 4, 5]), np.array([0]), np.array([0, 0, 1]), max_rank=3)
    assert r.mAP == pytest.approx(1 / 2)  # the positive is at rank 2 once the junk is gone
    np.testing.assert_array_equal(r.cmc, [0, 1, 1])
    # Without camera information nothing is removed: positives at ranks 1 and 3.
    r = evaluate_rank(d, np.array([5]), np.array([5, 4, 5]), None, None, max_rank=3)
    assert r.mAP == pytest.approx((1 + 2 / 3) / 2)


def test_skip_vs_zero_policy_and_counts():
    d = np.array([[0.1, 0.2], [0.3, 0.4]])
    q_ids, g_ids = np.array([1, 9]), np.array([1, 2])  # query 1 (id 9) has no positive
    skip = evaluate_rank(d, q_ids, g_ids, max_rank=2)
    zero = evaluate_rank(d, q_ids, g_ids, max_rank=2, no_positive="zero")
    assert (skip.n_queries, skip.n_valid_queries, skip.mAP) == (2, 1, 1.0)
    assert (zero.n_queries, zero.n_valid_queries, zero.mAP) == (2, 1, 0.5)
    np.testing.assert_array_equal(zero.cmc, [0.5, 0.5])
    assert np.isnan(skip.ap[1]) and skip.ap[0] == 1.0


def test_no_valid_query_raises_under_skip():
    d = np.zeros((2, 3))
    with pytest.raises(ValueError, match="no_positive='zero'"):
        evaluate_rank(d, np.array([1, 2]), np.array([3, 4, 5]))
    r = evaluate_rank(d, np.array([1, 2]), np.array([3, 4, 5]), no_positive="zero")
    assert r.mAP == 0.0 and r.n_valid_queries == 0


def test_ties_are_broken_by_gallery_order():
    d = np.full((1, 3), 0.5)
    # stable order [0, 1, 2]: positives (id 0) at ranks 2 and 3
    r = evaluate_rank(d, np.array([0]), np.array([1, 0, 0]), max_rank=3)
    assert r.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    np.testing.assert_array_equal(r.cmc, [0, 1, 1])
    # the same distances with the gallery reversed: positives first
    r = evaluate_rank(d, np.array([0]), np.array([0, 0, 1]), max_rank=3)
    assert r.mAP == 1.0
    # a tie between a positive and a negative at a strictly smaller distance than another negative
    d = np.array([[0.2, 0.1, 0.1, 0.3]])
    r = evaluate_rank(d, np.array([3]), np.array([8, 8, 3, 3]), max_rank=4)
    # stable order: 1 (neg, 0.1), 2 (pos, 0.1), 0 (neg), 3 (pos) -> ranks 2 and 4
    assert r.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_string_ids_and_cameras_equal_integer_codes():
    rng = np.random.default_rng(3)
    d, qi, gi, qc, gc = random_problem(rng, 20, 60, 5, 2, ties=True)
    names = np.array(["ant", "bee", "cat", "dog", "eel"])
    cams = np.array(["c1", "c2"])
    a = evaluate_rank(d, qi, gi, qc, gc)
    b = evaluate_rank(d, names[qi], names[gi], cams[qc], cams[gc])
    c = evaluate_rank(d, names[qi].astype(object), list(names[gi]), list(cams[qc]), cams[gc])
    assert a.mAP == b.mAP == c.mAP
    np.testing.assert_array_equal(a.cmc, b.cmc)


def test_cmc_has_max_rank_entries_even_for_a_small_gallery():
    d = np.array([[0.3, 0.1]])
    r = evaluate_rank(d, np.array([1]), np.array([1, 2]), max_rank=5)
    np.testing.assert_array_equal(r.cmc, [0, 1, 1, 1, 1])
    assert r.as_dict(ranks=(1, 5)) == {"mAP": 0.5, "mINP": 0.5, "rank1": 0.0, "rank5": 1.0}


def test_input_errors():
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(np.array([[0.1, np.nan]]), np.array([0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="distmat is 1x2"):
        evaluate_rank(np.zeros((1, 2)), np.array([0]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="both q_cams and g_cams"):
        evaluate_rank(np.zeros((1, 2)), np.array([0]), np.array([0, 1]), np.array([0]), None)
    with pytest.raises(ValueError, match="no_positive"):
        evaluate_rank(np.zeros((1, 2)), np.array([0]), np.array([0, 1]), no_positive="drop")
