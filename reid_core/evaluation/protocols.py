"""Dataset evaluation protocols on top of the rank engine, and a manifest-aware dispatcher.

- ``evaluate_atrw``: the official ATRW plain re-ID script (``atrwtool/plain.py``), every test image
  both query and gallery; single-camera ("sing") and cross-camera ("multi") buckets, mmAP.
- ``evaluate_roles``: disjoint query / gallery sets (rows with role "both" are in both; a query never
  matches itself).
- ``evaluate_probe_gallery``: probe = gallery (ELPephants AER): the query itself, or its closest
  match, is removed.
- open set: see ``open_set``; ``evaluate_manifest(..., "open_set")`` fits the threshold on the
  validation split.

Each takes either ``features`` (N x dim, rows aligned with the labels) or a precomputed ``distmat``
(N x N). Nothing here holds a query x gallery matrix beyond one block of rows.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from reid_core.evaluation.chunked import rank_features, torch_threads
from reid_core.evaluation.distances import Metric, as_tensor, rows_per_block
from reid_core.evaluation.open_set import OpenSetScores, fit_threshold, open_set_metrics, open_set_scores
from reid_core.evaluation.ranking import (
    APMode,
    NoPositivePolicy,
    QueryRanks,
    RankResult,
    rank_queries,
    summarize,
)
from reid_core.evaluation.relations import Relations, build_relations, encode_labels, market_relations

if TYPE_CHECKING:  # polars is only needed by evaluate_manifest, which receives a DataFrame
    import polars as pl

ATRW_PUBLIC_SEED = 114514
ATRW_FRAME_WINDOW = 3
PROTOCOLS = ("atrw", "disjoint", "probe_gallery", "open_set")


# ---------------------------------------------------------------------------------------------------
# Distances between selected rows of one image set


def _ranks(
    q_index: np.ndarray,
    g_index: np.ndarray,
    relations: Relations,
    *,
    features: np.ndarray | torch.Tensor | None,
    distmat: np.ndarray | torch.Tensor | None,
    metric: Metric,
    chunk_size: int | None,
    device: torch.device | str | None,
    drop_closest: bool = False,
    num_threads: int | None = None,
) -> QueryRanks:
    if (features is None) == (distmat is None):
        raise ValueError("pass exactly one of features= (N x dim) or distmat= (N x N)")
    if features is not None:
        feats = as_tensor(features)
        return rank_features(
            feats[torch.from_numpy(q_index)],
            feats[torch.from_numpy(g_index)],
            relations,
            metric=metric,
            chunk_size=chunk_size,
            device=device,
            drop_closest=drop_closest,
            num_threads=num_threads,
        )
    rows = chunk_size or rows_per_block(len(g_index), None)

    def blocks() -> Iterator[tuple[int, int, torch.Tensor]]:
        for s in range(0, len(q_index), rows):
            sub = distmat[q_index[s : s + rows]][:, g_index]  # one block of rows, never the whole Q x G
            d = as_tensor(sub, device)
            yield s, s + len(d), d if torch.is_floating_point(d) else d.double()

    with torch_threads(num_threads), torch.inference_mode():
        return rank_queries(blocks(), relations, drop_closest=drop_closest)


def _as_array(x: Sequence | np.ndarray) -> np.ndarray:
    """Lists (possibly holding None) become object arrays; arrays pass through."""
    return x if isinstance(x, np.ndarray) else np.asarray(x, dtype=object)


def _n_rows(features: np.ndarray | torch.Tensor | None, distmat: np.ndarray | torch.Tensor | None) -> int:
    x = features if features is not None else distmat
    if x is None:
        raise ValueError("pass exactly one of features= (N x dim) or distmat= (N x N)")
    if distmat is not None and distmat.shape[0] != distmat.shape[1]:
        raise ValueError(f"distmat must be square (N x N) here, got {tuple(distmat.shape)}")
    return x.shape[0]


# ---------------------------------------------------------------------------------------------------
# ATRW


def atrw_query_lists(buckets: Sequence[str | None], split: Literal["public", "private"]) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the (single-camera, cross-camera) queries as the official script picks them.

    Rows must be in ``gt_test_plain.json`` order. Private: all. Public: ``random.seed(114514)``,
    shuffle the sing then the multi list, keep ``sing[:len(sing)//2]`` and then - the official script's
    bug, reproduced on purpose - ``multi[:len(halved sing)//2]`` (350 + 175 queries on ATRW).
    """
    sing = [i for i, b in enumerate(buckets) if b == "sing"]
    multi = [i for i, b in enumerate(buckets) if b == "multi"]
    if split == "public":
        rng = random.Random(ATRW_PUBLIC_SEED)  # same Mersenne Twister stream as the global random.seed
        rng.shuffle(sing)
        rng.shuffle(multi)
        sing = sing[: len(sing) // 2]
        multi = multi[: len(sing) // 2]  # sic: uses the already halved sing list
    elif split != "private":
        raise ValueError(f"split must be 'public' or 'private', got {split!r}")
    return np.asarray(sing, np.int64), np.asarray(multi, np.int64)


@dataclass(frozen=True, eq=False)
class AtrwResult:
    """One split. ``pooled``: sing + multi queries together (not an official ATRW number)."""

    split: str
    single: RankResult
    cross: RankResult
    pooled: RankResult

    @property
    def mmAP(self) -> float:
        return (self.single.mAP + self.cross.mAP) / 2

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        out = {
            "mAP_single": self.single.mAP,
            "mAP_cross": self.cross.mAP,
            "mmAP": self.mmAP,
            "rank1_single": self.single.rank(1),
            "rank5_single": self.single.rank(5),
            "rank1_cross": self.cross.rank(1),
            "rank5_cross": self.cross.rank(5),
            "n_single": float(self.single.n_queries),
            "n_cross": float(self.cross.n_queries),
        }
        return {prefix + k: float(v) for k, v in out.items()}

    def official(self) -> dict[str, float]:
        """The official script's keys, e.g. ``mAP(single_cam)``, ``top-1(cross_cam)``."""
        out: dict[str, float] = {}
        for name, r in (("single_cam", self.single), ("cross_cam", self.cross)):
            out |= {f"mAP({name})": r.mAP, f"top-1({name})": r.rank(1), f"top-5({name})": r.rank(5)}
        return out


def atrw_relations(
    entity: np.ndarray,
    camera: np.ndarray,
    frame: np.ndarray,
    q_index: np.ndarray,
    g_index: np.ndarray,
    *,
    frame_window: int = ATRW_FRAME_WINDOW,
) -> Relations:
    """Positives = same entity; junk = same entity, same camera key, |frame difference| <= window,
    and always the query itself (the official rule also catches it, since its frame difference is 0)."""
    (ent,) = encode_labels(entity)
    (cam,) = encode_labels(camera)
    fr = np.asarray(frame, dtype=np.float64)  # None -> NaN: never "near"
    qe, ge = ent[q_index], ent[g_index]
    qc, gc, qf, gf = cam[q_index], cam[g_index], fr[q_index], fr[g_index]

    def junk(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            near = np.abs(qf[rows] - gf[cols]) <= frame_window
        return (qc[rows] == gc[cols]) & (qc[rows] >= 0) & near

    where = np.full(len(entity), -1, np.int64)
    where[g_index] = np.arange(len(g_index))
    self_col = where[q_index]
    has = self_col >= 0
    return build_relations(qe, ge, junk=junk, extra_junk=(np.flatnonzero(has), self_col[has]))


def evaluate_atrw(
    entity: np.ndarray,
    camera: np.ndarray,
    frame: np.ndarray,
    bucket: Sequence[str | None],
    *,
    features: np.ndarray | torch.Tensor | None = None,
    distmat: np.ndarray | torch.Tensor | None = None,
    splits: Sequence[Literal["public", "private"]] = ("private", "public"),
    metric: Metric = "cosine",
    junk_entity: object = -1,
    frame_window: int = ATRW_FRAME_WINDOW,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    num_threads: int | None = None,
) -> dict[str, AtrwResult]:
    """The official ATRW plain re-ID evaluation, per split.

    Rows are the test images in ``gt_test_plain.json`` order: ``entity`` ids, ``camera`` keys (e.g.
    "23-4" for frame[0], frame[1]), ``frame`` numbers and ``bucket`` ("sing"/"multi"/other = not a
    query). Every image is in the gallery except those of ``junk_entity`` (official: eid -1).
    AP per query equals the script's ``sklearn.average_precision_score`` on the junk-filtered ranking
    (non-interpolated AP; there are no ties since the script scores by 1/rank); queries without a
    positive count as AP 0 and miss in CMC, and top-k divides by the bucket size (no_positive="zero").
    """
    n = _n_rows(features, distmat)
    entity = np.asarray(entity, dtype=object)
    if not (len(entity) == len(camera) == len(frame) == len(bucket) == n):
        raise ValueError("entity, camera, frame, bucket and the features/distmat rows must have equal length")
    valid_gallery = np.array([not (e == junk_entity or e is None) for e in entity.tolist()])
    g_index = np.flatnonzero(valid_gallery)
    entity = np.where(valid_gallery, entity, None)
    lists = {s: atrw_query_lists(bucket, s) for s in splits}
    sing_all, multi_all = atrw_query_lists(bucket, "private")
    q_index = np.concatenate([sing_all, multi_all])
    if len(q_index) == 0:
        raise ValueError("no ATRW queries: no row has bucket 'sing' or 'multi'")
    relations = atrw_relations(entity, camera, frame, q_index, g_index, frame_window=frame_window)
    ranks = _ranks(
        q_index, g_index, relations, features=features, distmat=distmat, metric=metric,
        chunk_size=chunk_size, device=device, num_threads=num_threads,
    )
    position = np.full(n, -1, np.int64)
    position[q_index] = np.arange(len(q_index))

    def result(rows: np.ndarray) -> RankResult:
        return summarize(ranks, max_rank=10, no_positive="zero", queries=position[rows])

    return {
        split: AtrwResult(split, result(sing), result(multi), result(np.concatenate([sing, multi])))
        for split, (sing, multi) in lists.items()
    }


# ---------------------------------------------------------------------------------------------------
# Generic protocols


def evaluate_roles(
    ids: np.ndarray,
    roles: Sequence[str],
    cams: np.ndarray | None = None,
    *,
    features: np.ndarray | torch.Tensor | None = None,
    distmat: np.ndarray | torch.Tensor | None = None,
    metric: Metric = "cosine",
    max_rank: int = 50,
    no_positive: NoPositivePolicy = "skip",
    ap_mode: APMode = "standard",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    num_threads: int | None = None,
) -> RankResult:
    """Disjoint query / gallery from a per-row role ("query", "gallery" or "both").

    Same-id same-camera gallery items are junk when ``cams`` is given; a "both" row is never its own
    match. Query rows with a missing id (None) have no positive (skipped or zero per policy).
    """
    n = _n_rows(features, distmat)
    roles_arr = np.asarray(roles, dtype=object)
    bad = sorted({str(r) for r in roles_arr.tolist() if r not in ("query", "gallery", "both")})
    if bad or len(roles_arr) != n:
        raise ValueError(f"roles must be query/gallery/both for each of the {n} rows (got {bad or len(roles_arr)})")
    q_index = np.flatnonzero(np.isin(roles_arr, ["query", "both"]))
    g_index = np.flatnonzero(np.isin(roles_arr, ["gallery", "both"]))
    if len(q_index) == 0 or len(g_index) == 0:
        raise ValueError(f"need at least one query and one gallery row (have {len(q_index)} and {len(g_index)})")
    where = np.full(n, -1, np.int64)
    where[g_index] = np.arange(len(g_index))
    ids = _as_array(ids)
    c = None if cams is None else _as_array(cams)
    relations = market_relations(
        ids[q_index], ids[g_index], None if c is None else c[q_index], None if c is None else c[g_index],
        self_index=where[q_index],
    )
    ranks = _ranks(
        q_index, g_index, relations, features=features, distmat=distmat, metric=metric,
        chunk_size=chunk_size, device=device, num_threads=num_threads,
    )
    return summarize(ranks, max_rank=max_rank, no_positive=no_positive, ap_mode=ap_mode)


def evaluate_probe_gallery(
    ids: np.ndarray,
    cams: np.ndarray | None = None,
    *,
    features: np.ndarray | torch.Tensor | None = None,
    distmat: np.ndarray | torch.Tensor | None = None,
    remove: Literal["self", "closest"] = "self",
    metric: Metric = "cosine",
    max_rank: int = 50,
    no_positive: NoPositivePolicy = "skip",
    ap_mode: APMode = "standard",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    num_threads: int | None = None,
) -> RankResult:
    """Every row is both probe and gallery. ``remove="self"`` drops the query itself (by index);
    ``remove="closest"`` drops its nearest item whatever it is (AER's literal rule: it differs from
    "self" only when a duplicate image ties with or beats the query's own distance)."""
    n = _n_rows(features, distmat)
    if remove not in ("self", "closest"):
        raise ValueError(f"remove must be 'self' or 'closest', got {remove!r}")
    index = np.arange(n, dtype=np.int64)
    relations = market_relations(ids, ids, cams, cams, self_index=index if remove == "self" else None)
    ranks = _ranks(
        index, index, relations, features=features, distmat=distmat, metric=metric, chunk_size=chunk_size,
        device=device, drop_closest=remove == "closest", num_threads=num_threads,
    )
    return summarize(ranks, max_rank=max_rank, no_positive=no_positive, ap_mode=ap_mode)


# ---------------------------------------------------------------------------------------------------
# Manifest dispatcher


def _column(df: pl.DataFrame, name: str, protocol: str) -> np.ndarray:
    if name not in df.columns:
        raise ValueError(f"protocol {protocol!r} needs a manifest column {name!r}")
    return df[name].to_numpy()


def _cams(df: pl.DataFrame) -> np.ndarray | None:
    if "camera" not in df.columns or df["camera"].null_count() == len(df):
        return None
    return df["camera"].to_numpy()  # nulls become None -> code -1, which never matches


def _rank_dict(r: RankResult) -> dict[str, float]:
    out = r.as_dict(ranks=(1, 5, 10))
    out |= {"n_queries": float(r.n_queries), "n_valid_queries": float(r.n_valid_queries)}
    return out


def evaluate_manifest(
    features: np.ndarray | torch.Tensor | None,
    manifest: pl.DataFrame,
    protocol: str,
    *,
    split: str | None = "test",
    metric: Metric = "cosine",
    max_rank: int = 50,
    no_positive: NoPositivePolicy = "skip",
    ap_mode: APMode = "standard",
    remove: Literal["self", "closest"] = "self",
    threshold: float | None = None,
    val_split: str = "val",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    num_threads: int | None = None,
    distmat: np.ndarray | torch.Tensor | None = None,
) -> dict[str, float]:
    """Evaluate ``features`` (one row per manifest row) under ``protocol``; flat metric names. ``distmat``
    (N x N over the manifest's rows, smaller = closer) replaces the features' distances, e.g. a ranking
    re-scored by local-feature matching; the open_set protocol needs features.

    Rows are restricted to ``split`` when the manifest has a ``split`` column (None = all rows);
    entity ids are strings (null = unknown identity, never anyone's positive). Protocols:

    - "disjoint": ``role`` query/gallery/both -> mAP, rank1/5/10, mINP, n_queries, n_valid_queries.
    - "probe_gallery": every row both ways, the query itself (``remove="self"``) or its closest match
      (``remove="closest"``) dropped -> same keys.
    - "atrw": columns entity, camera ("23-4"), frame, atrw_query ("sing"/"multi"), rows in
      ``gt_test_plain.json`` order -> mAP_single, mAP_cross, mmAP, rank1/5_single, rank1/5_cross,
      n_single, n_cross for the private split (all queries) and the same with a ``public_`` prefix
      for the official public split; plus mAP, rank1, rank5, mINP pooled over both buckets with the
      ATRW junk rule (not an official ATRW number).
    - "open_set": ``role`` query/gallery; a query whose entity is null or absent from the gallery is a
      new individual. The threshold is ``threshold`` or is fitted on the ``val_split`` rows -> BAKS,
      BAUS, BA_gmean, AUROC, threshold, n_known, n_unknown, and mAP/rank1/... on the known queries.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if (features is None) == (distmat is None):
        raise ValueError("pass exactly one of features= (N x dim) or distmat= (N x N)")
    if distmat is not None and protocol == "open_set":
        raise ValueError("the open_set protocol scores nearest-match distances of features; pass features=")
    given = features if features is not None else distmat
    if len(given) != len(manifest):
        raise ValueError(f"{len(given)} feature / distance rows for a manifest of {len(manifest)} rows")
    feats = as_tensor(given)
    kind = "features" if features is not None else "distmat"
    common = dict(metric=metric, chunk_size=chunk_size, device=device, num_threads=num_threads)

    def select(name: str | None) -> tuple[pl.DataFrame, torch.Tensor]:
        if name is None or "split" not in manifest.columns:
            return manifest, feats
        mask = (manifest["split"] == name).fill_null(False).to_numpy()
        index = torch.from_numpy(mask)
        return manifest.filter(mask.tolist()), feats[index] if kind == "features" else feats[index][:, index]

    df, x = select(split)
    if len(df) == 0:
        raise ValueError(f"no manifest rows with split == {split!r}")
    common[kind] = x
    entity = _column(df, "entity", protocol)

    if protocol == "disjoint":
        r = evaluate_roles(
            entity, _column(df, "role", protocol), _cams(df), max_rank=max_rank,
            no_positive=no_positive, ap_mode=ap_mode, **common,
        )
        return _rank_dict(r)
    if protocol == "probe_gallery":
        r = evaluate_probe_gallery(
            entity, _cams(df), remove=remove, max_rank=max_rank, no_positive=no_positive,
            ap_mode=ap_mode, **common,
        )
        return _rank_dict(r)
    if protocol == "atrw":
        frame = _column(df, "frame", protocol).astype(np.float64)  # null -> NaN (never "near")
        bucket = _column(df, "atrw_query", protocol).tolist()
        res = evaluate_atrw(
            entity, _column(df, "camera", protocol), frame, bucket, junk_entity=None, **common
        )
        pooled = res["private"].pooled.as_dict(ranks=(1, 5))  # mAP, mINP, rank1, rank5
        return res["private"].as_dict() | res["public"].as_dict("public_") | pooled
    # open_set (features only, checked above)
    plain = {k: v for k, v in common.items() if k != "features"}

    def scores(part: pl.DataFrame, xs: torch.Tensor) -> OpenSetScores:
        roles = _column(part, "role", protocol)
        if (roles == "both").any():
            raise ValueError("open_set needs disjoint roles: a 'both' row would be its own nearest match")
        q, g = roles == "query", roles == "gallery"
        ents = _column(part, "entity", protocol)
        return open_set_scores(xs[torch.from_numpy(q)], xs[torch.from_numpy(g)], ents[q], ents[g], **plain)

    if threshold is None:
        vdf, vx = select(val_split)
        if "split" not in manifest.columns or len(vdf) == 0:
            raise ValueError(
                f"open_set needs a threshold: pass threshold=..., or include validation rows "
                f"(split == {val_split!r}) with known and new-individual queries to fit one"
            )
        vs = scores(vdf, vx)
        threshold = fit_threshold(vs.true_codes, vs.pred_codes, vs.scores, vs.known)
    s = scores(df, x)
    out = open_set_metrics(s.true_codes, s.pred_codes, s.scores, s.known, threshold).as_dict()
    if s.known.any():  # closed-set ranking metrics; new individuals have no positive and are skipped
        r = evaluate_roles(
            entity, _column(df, "role", protocol), _cams(df), features=x, max_rank=max_rank,
            no_positive="skip", ap_mode=ap_mode, **plain,
        )
        out |= _rank_dict(r)
    return out
