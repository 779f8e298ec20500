"""Open-set metrics: BAKS, BAUS, their geometric mean, AUROC, and the validation threshold."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest

from reid_core.evaluation import (
    auroc,
    evaluate_manifest,
    evaluate_open_set,
    fit_threshold,
    open_set_metrics,
    open_set_scores,
)


def brute_force_auroc(scores, positive):
    pos, neg = scores[positive], scores[~positive]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(4))
def test_auroc_equals_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    positive = rng.random(40) < 0.4
    assert auroc(scores, positive) == pytest.approx(brute_force_auroc(scores, positive), abs=1e-12)


def test_auroc_edge_cases():
    assert auroc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert auroc(np.array([0.5, 0.5]), np.array([False, True])) == 0.5
    assert math.isnan(auroc(np.array([0.5, 0.6]), np.array([True, True])))


def test_hand_computed_baks_baus():
    # known identities 0 (3 queries) and 1 (1 query); unknown identities 7 (2 queries) and 8 (1 query)
    true = np.array([0, 0, 0, 1, 7, 7, 8])
    pred = np.array([0, 0, 5, 1, 0, 1, 1])  # nearest-gallery identity
    score = np.array([0.1, 0.6, 0.2, 0.3, 0.9, 0.4, 0.8])
    known = np.array([True, True, True, True, False, False, False])
    r = open_set_metrics(true, pred, score, known, threshold=0.5)
    # identity 0: query 0 right, query 1 predicted new (0.6 > 0.5), query 2 wrong id -> 1/3; identity 1: 1
    assert r.BAKS == pytest.approx((1 / 3 + 1) / 2)
    # identity 7: one of two predicted new; identity 8: predicted new -> (1/2 + 1) / 2
    assert r.BAUS == pytest.approx((1 / 2 + 1) / 2)
    assert r.BA_gmean == pytest.approx(math.sqrt(r.BAKS * r.BAUS))
    assert r.AUROC == pytest.approx(brute_force_auroc(score, ~known))
    assert (r.n_known, r.n_unknown, r.threshold) == (4, 3, 0.5)


def test_fit_threshold_maximises_the_geometric_mean():
    rng = np.random.default_rng(0)
    n = 80
    known = rng.random(n) < 0.6
    true = np.where(known, rng.integers(0, 6, n), rng.integers(10, 14, n))
    pred = np.where(rng.random(n) < 0.8, true, rng.integers(0, 6, n))
    score = np.where(known, rng.normal(0.3, 0.15, n), rng.normal(0.6, 0.15, n)).round(2)  # ties
    t = fit_threshold(true, pred, score, known)
    best = max(
        open_set_metrics(true, pred, score, known, c).BA_gmean for c in np.concatenate([[-1.0], np.unique(score)])
    )
    assert open_set_metrics(true, pred, score, known, t).BA_gmean == pytest.approx(best, abs=1e-12)
    with pytest.raises(ValueError, match="both known and unknown"):
        fit_threshold(true, pred, score, np.ones(n, bool))


def open_set_data(seed):
    """Gallery of identities 0-5; queries of those (known) and of 6-8 (new, never in the gallery)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((9, 16)) * 3
    g_ids = np.repeat(np.arange(6), 4)
    q_ids = np.concatenate([np.repeat(np.arange(6), 2), np.repeat(np.arange(6, 9), 3)])
    g = centres[g_ids] + 0.5 * rng.standard_normal((len(g_ids), 16))
    q = centres[q_ids] + 0.5 * rng.standard_normal((len(q_ids), 16))
    return q, g, q_ids, g_ids


def test_end_to_end_on_separable_data():
    q, g, qi, gi = open_set_data(0)
    val = open_set_scores(q, g, qi, gi, metric="euclidean")
    assert val.known.sum() == 12 and (~val.known).sum() == 9
    t = fit_threshold(val.true_codes, val.pred_codes, val.scores, val.known)
    q2, g2, qi2, gi2 = open_set_data(1)
    r = evaluate_open_set(q, g, qi, gi, threshold=t, metric="euclidean")
    assert (r.BAKS, r.BAUS, r.BA_gmean, r.AUROC) == (1.0, 1.0, 1.0, 1.0)
    # unlabelled new individuals (None) form one group for BAUS
    unlabeled = np.array([i if i < 6 else None for i in qi], dtype=object)
    r2 = evaluate_open_set(q, g, unlabeled, gi, threshold=t, metric="euclidean")
    assert r2.n_unknown == 9 and r2.BAUS == 1.0


def test_manifest_open_set_fits_the_threshold_on_validation_rows():
    qv, gv, qiv, giv = open_set_data(2)
    qt, gt, qit, git = open_set_data(3)
    feats = np.vstack([qv, gv, qt, gt])
    entity = [f"id{i}" for i in np.concatenate([qiv, giv, qit, git])]
    split = ["val"] * (len(qv) + len(gv)) + ["test"] * (len(qt) + len(gt))
    role = ["query"] * len(qv) + ["gallery"] * len(gv) + ["query"] * len(qt) + ["gallery"] * len(gt)
    df = pl.DataFrame({"entity": entity, "split": split, "role": role, "camera": [None] * len(entity)},
                      schema_overrides={"camera": pl.String})
    # new individuals of the test split are unlabelled (null entity), as in AnimalCLEF
    new_test = pl.col("entity").is_in(["id6", "id7", "id8"]) & (pl.col("split") == "test")
    df = df.with_columns(pl.when(new_test).then(None).otherwise(pl.col("entity")).alias("entity"))
    out = evaluate_manifest(feats, df, "open_set", metric="euclidean")
    assert out["BAKS"] == 1.0 and out["BAUS"] == 1.0 and out["AUROC"] == 1.0
    assert out["n_known"] == 12 and out["n_unknown"] == 9
    assert out["mAP"] == 1.0 and out["n_valid_queries"] == 12  # closed-set metrics on known queries
    with pytest.raises(ValueError, match="needs a threshold"):
        n_val = len(qv) + len(gv)
        evaluate_manifest(feats[n_val:], df.filter(pl.col("split") == "test"), "open_set")
    fixed = evaluate_manifest(feats, df, "open_set", metric="euclidean", threshold=-1.0)
    assert fixed["BAKS"] == 0.0 and fixed["BAUS"] == 1.0
