"""Protocols: ATRW against a literal re-implementation of the official plain.py, roles, probe = gallery,
and the manifest dispatcher."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from reid_core.evaluation import (
    atrw_query_lists,
    evaluate_atrw,
    evaluate_manifest,
    evaluate_probe_gallery,
    evaluate_rank,
    evaluate_roles,
    pairwise_distance,
)

# ---------------------------------------------------------------------------------------------------
# A literal copy of the logic of cvwc2019/ATRWEvalScript atrwtool/plain.py (inputs as lists instead
# of file paths), with sklearn's binary average_precision_score written out.


def sklearn_average_precision(y_true, y_score):
    """sklearn.metrics.average_precision_score for binary labels (precision_recall_curve + step sum)."""
    y_true, y_score = np.asarray(y_true, float), np.asarray(y_score, float)
    desc = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[desc], y_true[desc]
    distinct = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    precision = tps / (tps + fps)
    if tps[-1] == 0:
        return np.nan  # old sklearn: 0/0 recall -> NaN (new sklearn returns 0; the script maps NaN to 0)
    recall = tps / tps[-1]
    precision, recall = np.r_[precision[::-1], 1], np.r_[recall[::-1], 0]
    return -np.sum(np.diff(recall) * precision[:-1])


def official_exclude(eid, fid, eids, fids):
    eids, fids = np.asarray(eids), np.asarray(fids)
    eid_match = eids == eid
    cid_match = np.logical_and(fid[0] == fids[:, 0], fid[1] == fids[:, 1])
    frame_match = np.abs(fids[:, 2] - fid[2]) <= 3
    mask = np.logical_and(cid_match, eid_match)
    mask = np.logical_and(mask, frame_match)
    junk_images = eids == -1
    return np.logical_or(mask, junk_images)


def official_eval_impl(anno, res, partial=False):
    random.seed(114514)
    eids, fids = {}, {}
    query_multi, query_sing = [], []
    for obj in anno:
        imgid, query, frame, entityid = obj["imgid"], obj["query"], obj["frame"], obj["entityid"]
        if query == "multi":
            query_multi.append(imgid)
        elif query == "sing":
            query_sing.append(imgid)
        eids[imgid] = entityid
        fids[imgid] = tuple(frame)
    if partial:
        random.shuffle(query_sing)
        random.shuffle(query_multi)
        query_sing = query_sing[: len(query_sing) // 2]
        query_multi = query_multi[: len(query_sing) // 2]
    aps_sing, aps_multi = [], []
    cmc_sing, cmc_multi = np.zeros(len(eids), dtype=np.int32), np.zeros(len(eids), dtype=np.int32)
    for ans in res:
        queryid, ans_ids = ans["query_id"], ans["ans_ids"]
        if queryid in query_multi:
            aps = aps_multi
        elif queryid in query_sing:
            aps = aps_sing
        else:
            continue
        entityid = eids[queryid]
        gt_eids = np.asarray([eids[i] for i in ans_ids])
        pid_matches = gt_eids == entityid
        mask = official_exclude(entityid, fids[queryid], gt_eids, [fids[i] for i in ans_ids])
        distances = np.arange(len(ans_ids)) + 1.0
        distances[mask] = np.inf
        pid_matches[mask] = False
        scores = 1 / distances
        ap = sklearn_average_precision(pid_matches, scores)
        if np.isnan(ap):
            aps.append(0)
            continue
        aps.append(ap)
        k = np.where(pid_matches[np.argsort(distances)])[0][0]
        if queryid in query_multi:
            cmc_multi[k:] += 1
        else:
            cmc_sing[k:] += 1
    return {
        "mAP(single_cam)": np.mean(aps_sing),
        "top-1(single_cam)": cmc_sing[0] / len(query_sing),
        "top-5(single_cam)": cmc_sing[4] / len(query_sing),
        "mAP(cross_cam)": np.mean(aps_multi),
        "top-1(cross_cam)": cmc_multi[0] / len(query_multi),
        "top-5(cross_cam)": cmc_multi[4] / len(query_multi),
    }


def synthetic_atrw(seed=0):
    """An ATRW-shaped test set: sing entities under one camera key, multi entities under several,
    bursts of near frames (junk), one eid -1 image, features with identity structure."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(14):
        multi = e >= 8
        keys = [(int(rng.integers(0, 5)), int(rng.integers(0, 3))) for _ in range(3 if multi else 1)]
        start = int(rng.integers(0, 500))
        for k in range(int(rng.integers(3, 9))):
            key = keys[k % len(keys)]
            frame = start + int(rng.integers(0, 4)) * (k // 2) + (0 if k % 3 else 40 * k)
            rows.append({"entityid": 4 + 7 * e, "query": "multi" if multi else "sing", "frame": [*key, frame]})
    rows.append({"entityid": -1, "query": "sing", "frame": [1, 1, 5]})
    order = rng.permutation(len(rows))  # GT file order is not grouped by entity
    anno = [{**rows[i], "imgid": int(1000 + 3 * j)} for j, i in enumerate(order)]
    ent = np.array([a["entityid"] for a in anno])
    centres = rng.standard_normal((300, 12))
    feats = centres[ent + 1] + 1.3 * rng.standard_normal((len(anno), 12))
    return anno, feats


def submission(anno, distmat):
    """Each query's ranked gallery: the other test images by stable distance order (self dropped)."""
    out = []
    for i, a in enumerate(anno):
        order = [j for j in np.argsort(distmat[i], kind="stable") if j != i]
        out.append({"query_id": a["imgid"], "ans_ids": [anno[j]["imgid"] for j in order]})
    return out


def atrw_arrays(anno):
    entity = np.array([a["entityid"] for a in anno])
    camera = np.array([f"{a['frame'][0]}-{a['frame'][1]}" for a in anno])
    frame = np.array([a["frame"][2] for a in anno])
    bucket = [a["query"] for a in anno]
    return entity, camera, frame, bucket


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_atrw_matches_official_script(seed):
    anno, feats = synthetic_atrw(seed)
    distmat = pairwise_distance(feats, feats, "cosine").numpy()
    entity, camera, frame, bucket = atrw_arrays(anno)
    ours = evaluate_atrw(entity, camera, frame, bucket, distmat=distmat)
    from_features = evaluate_atrw(entity, camera, frame, bucket, features=feats, chunk_size=5)
    res = submission(anno, distmat)
    state = random.getstate()
    try:
        official = {"private": official_eval_impl(anno, res), "public": official_eval_impl(anno, res, partial=True)}
    finally:
        random.setstate(state)
    for split in ("private", "public"):
        for key, value in official[split].items():
            assert ours[split].official()[key] == pytest.approx(value, abs=1e-12), (split, key)
            assert from_features[split].official()[key] == pytest.approx(value, abs=1e-12), (split, key)
        r = ours[split]
        assert r.mmAP == pytest.approx((official[split]["mAP(single_cam)"] + official[split]["mAP(cross_cam)"]) / 2)
    assert 0 < ours["private"].single.mAP < 1
    # the near-frame junk rule matters on this data (window -1 keeps only the query itself out)
    no_near = evaluate_atrw(entity, camera, frame, bucket, distmat=distmat, frame_window=-1)
    assert no_near["private"].single.mAP != pytest.approx(ours["private"].single.mAP)


def test_atrw_public_split_reproduces_the_official_slicing_bug():
    buckets = ["sing"] * 701 + ["multi"] * 1063
    random.Random(5).shuffle(buckets)  # interleaved, like a real GT file
    sing, multi = atrw_query_lists(buckets, "public")
    assert (len(sing), len(multi)) == (350, 175)
    state = random.getstate()
    try:
        random.seed(114514)
        s = [i for i, b in enumerate(buckets) if b == "sing"]
        m = [i for i, b in enumerate(buckets) if b == "multi"]
        random.shuffle(s)
        random.shuffle(m)
        s = s[: len(s) // 2]
        m = m[: len(s) // 2]
    finally:
        random.setstate(state)
    assert sing.tolist() == s and multi.tolist() == m
    private = atrw_query_lists(buckets, "private")
    assert (len(private[0]), len(private[1])) == (701, 1063)


# ---------------------------------------------------------------------------------------------------
# Generic protocols


def labelled_features(seed, n=60, n_ids=8, dim=8):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_ids, n)
    feats = rng.standard_normal((n_ids, dim))[ids] + 0.9 * rng.standard_normal((n, dim))
    return feats, ids, rng


def test_roles_equal_market_eval_with_self_removed():
    feats, ids, rng = labelled_features(0)
    cams = rng.integers(0, 3, len(ids))
    roles = rng.choice(["query", "gallery", "both"], len(ids))
    q, g = np.flatnonzero(roles != "gallery"), np.flatnonzero(roles != "query")
    d = pairwise_distance(feats[q], feats[g], "cosine").numpy()
    # With cameras, a "both" row's own gallery copy is same id + same camera: junk by the Market rule.
    got = evaluate_roles(ids, roles, cams, features=feats)
    ref = evaluate_rank(d, ids[q], ids[g], cams[q], cams[g])
    assert got.mAP == pytest.approx(ref.mAP, abs=1e-12)
    np.testing.assert_allclose(got.cmc, ref.cmc, atol=1e-12)
    assert got.n_queries == len(q) and (roles == "both").sum() > 5
    # Without cameras only the self pair is junk: express it as a per-row "camera" in the reference.
    got_nocam = evaluate_roles(ids, roles, None, features=feats)
    ref_nocam = evaluate_rank(d, ids[q], ids[g], np.array([f"row{i}" for i in q]), np.array([f"row{i}" for i in g]))
    assert got_nocam.mAP == pytest.approx(ref_nocam.mAP, abs=1e-12)
    np.testing.assert_allclose(got_nocam.cmc, ref_nocam.cmc, atol=1e-12)
    assert got_nocam.mAP != pytest.approx(got.mAP)  # same-camera positives count again


def test_probe_gallery_self_vs_closest():
    feats = np.array([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])  # rows 0 and 1 are duplicates
    ids = np.array(["a", "b", "b", "c"])
    by_self = evaluate_probe_gallery(ids, features=feats, remove="self", no_positive="zero")
    by_closest = evaluate_probe_gallery(ids, features=feats, remove="closest", no_positive="zero")
    # query 1 ("b"): without itself, its duplicate "a" (distance 0) is first, then row 2 ("b"): AP 1/2.
    assert by_self.ap[1] == pytest.approx(0.5)
    # closest removal drops row 0 (the tie at distance 0 goes to the lower gallery index), keeping
    # query 1 itself, which is then a positive at rank 1, and row 2 at rank 2: AP 1.
    assert by_closest.ap[1] == pytest.approx(1.0)
    assert np.isnan(by_self.ap[0]) and np.isnan(by_self.ap[3])  # singletons: no positive
    # query 2 ("b"): rows 0 and 1 tie; gallery order puts "a" first, so its positive is at rank 2
    assert by_self.ap[2] == pytest.approx(0.5)
    assert by_self.n_valid_queries == 2 and by_self.mAP == pytest.approx((0.5 + 0.5) / 4)  # zero policy
    # with distinct features, self is the closest item and both rules agree
    feats2, ids2, _ = labelled_features(4, n=40)
    a = evaluate_probe_gallery(ids2, features=feats2, remove="self")
    b = evaluate_probe_gallery(ids2, features=feats2, remove="closest")
    c = evaluate_probe_gallery(ids2, distmat=pairwise_distance(feats2, feats2).numpy(), remove="self")
    assert a.mAP == pytest.approx(b.mAP, abs=1e-12) == pytest.approx(c.mAP, abs=1e-12)


def test_protocol_input_errors():
    feats, ids, _ = labelled_features(5, n=6)
    with pytest.raises(ValueError, match="exactly one of"):
        evaluate_probe_gallery(ids)
    with pytest.raises(ValueError, match="query/gallery/both"):
        evaluate_roles(ids, ["query", "x", "gallery", "query", "gallery", "both"], features=feats)
    with pytest.raises(ValueError, match="at least one query"):
        evaluate_roles(ids, ["gallery"] * 6, features=feats)


# ---------------------------------------------------------------------------------------------------
# Manifest dispatcher


def manifest_frame(**columns):
    n = len(next(iter(columns.values())))
    base = {"split": ["test"] * n}
    base.update(columns)
    return pl.DataFrame(base)


def test_manifest_atrw():
    anno, feats = synthetic_atrw(0)
    entity, camera, frame, bucket = atrw_arrays(anno)
    df = manifest_frame(
        entity=[None if e == -1 else f"tiger_{e}" for e in entity],
        camera=camera.tolist(),
        frame=frame.tolist(),
        atrw_query=bucket,
        role=["both"] * len(anno),
    )
    extra = pl.DataFrame({"split": ["train"], "entity": ["x"], "camera": ["0-0"], "frame": [1],
                          "atrw_query": [None], "role": ["both"]})
    df = pl.concat([df, extra], how="diagonal_relaxed")
    feats_all = np.vstack([feats, np.zeros((1, feats.shape[1])) + 1])
    out = evaluate_manifest(feats_all, df, "atrw")
    ref = evaluate_atrw(entity, camera, frame, bucket, features=feats)
    assert out["mAP_single"] == pytest.approx(ref["private"].single.mAP, abs=1e-12)
    assert out["mmAP"] == pytest.approx(ref["private"].mmAP, abs=1e-12)
    assert out["public_rank1_cross"] == pytest.approx(ref["public"].cross.rank(1), abs=1e-12)
    assert {"mAP", "rank1", "rank5", "mINP", "n_single", "public_mmAP"} <= set(out)
    assert out["n_single"] + out["n_cross"] == len(anno)


def test_manifest_disjoint_and_probe_gallery():
    feats, ids, rng = labelled_features(6)
    roles = rng.choice(["query", "gallery"], len(ids))
    cams = rng.integers(0, 2, len(ids))
    df = manifest_frame(entity=[f"e{i}" for i in ids], camera=[f"c{c}" for c in cams], frame=[0] * len(ids),
                        role=roles.tolist())
    out = evaluate_manifest(feats, df, "disjoint")
    q, g = roles == "query", roles == "gallery"
    ref = evaluate_rank(pairwise_distance(feats[q], feats[g]).numpy(), ids[q], ids[g], cams[q], cams[g])
    assert out["mAP"] == pytest.approx(ref.mAP, abs=1e-12)
    assert out["rank1"] == pytest.approx(ref.rank(1), abs=1e-12)
    assert out["n_queries"] == q.sum()
    assert set(out) == {"mAP", "mINP", "rank1", "rank5", "rank10", "n_queries", "n_valid_queries"}
    pg = evaluate_manifest(feats, df.with_columns(pl.lit(None, pl.String).alias("camera")), "probe_gallery")
    assert pg["mAP"] == pytest.approx(evaluate_probe_gallery(ids, features=feats).mAP, abs=1e-12)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_manifest(feats, df, "market")
    with pytest.raises(ValueError, match="needs a manifest column 'atrw_query'"):
        evaluate_manifest(feats, df, "atrw")
