"""Open-set identification: a query may be an individual the gallery (database) has never seen.

Each query is assigned its nearest gallery identity; its *new-individual score* is the distance to
that nearest gallery image, and it is predicted "new individual" when the score exceeds a threshold.
Metrics (AnimalCLEF / wildlife-datasets definitions):

- BAKS: balanced accuracy on known identities - per known identity, the fraction of its queries
  given the right identity (a "new" prediction is wrong), averaged over identities.
- BAUS: balanced accuracy on unknown identities - per unknown identity, the fraction of its queries
  predicted "new", averaged over identities. Unknown queries without a label form one group.
- BA_gmean = sqrt(BAKS * BAUS) (the AnimalCLEF score for one dataset).
- AUROC of the new-individual score (unknown = positive class), Mann-Whitney with mid-ranks for ties.

The threshold must come from validation data (``fit_threshold``), never from the test queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from reid_core.evaluation.chunked import torch_threads
from reid_core.evaluation.distances import Metric, PreparedFeatures, iter_feature_blocks, rows_per_block
from reid_core.evaluation.relations import encode_labels


@dataclass(frozen=True)
class OpenSetResult:
    BAKS: float
    BAUS: float
    BA_gmean: float
    AUROC: float
    threshold: float
    n_known: int
    n_unknown: int

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the average of their ranks (scipy's rankdata "average")."""
    order = np.argsort(x, kind="stable")
    s = x[order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(s))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive`` (ties count 1/2).

    Equals P(score of a random positive > score of a random negative) + P(tie) / 2, computed from
    mid-ranks (Mann-Whitney U). NaN when either class is empty.
    """
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    u = midranks(scores)[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _class_weights(codes: np.ndarray) -> np.ndarray:
    """Weight per sample so that every class sums to 1 / (number of classes)."""
    if len(codes) == 0:
        return np.zeros(0)
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    return 1.0 / (len(counts) * counts[inverse])


@dataclass(frozen=True, eq=False)
class _Split:
    known_w: np.ndarray  # per known query: class weight if its identity was predicted right, else 0
    known_s: np.ndarray
    unknown_w: np.ndarray
    unknown_s: np.ndarray


def _split(true_codes: np.ndarray, pred_codes: np.ndarray, scores: np.ndarray, known: np.ndarray) -> _Split:
    kw = _class_weights(true_codes[known]) * (pred_codes[known] == true_codes[known])
    return _Split(kw, scores[known], _class_weights(true_codes[~known]), scores[~known])


def _rates(sp: _Split, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BAKS and BAUS for each threshold (predict "new" iff score > threshold)."""
    def mass_at_most(s: np.ndarray, w: np.ndarray) -> np.ndarray:
        order = np.argsort(s, kind="stable")
        cum = np.concatenate([[0.0], np.cumsum(w[order])])
        return cum[np.searchsorted(s[order], thresholds, "right")]

    baks = mass_at_most(sp.known_s, sp.known_w) if len(sp.known_s) else np.full(len(thresholds), np.nan)
    baus = (  # clipped: the subtraction can leave -1e-17 where every unknown query is below threshold
        np.maximum(sp.unknown_w.sum() - mass_at_most(sp.unknown_s, sp.unknown_w), 0.0)
        if len(sp.unknown_s)
        else np.full(len(thresholds), np.nan)
    )
    return baks, baus


def open_set_metrics(
    true_codes: np.ndarray, pred_codes: np.ndarray, scores: np.ndarray, known: np.ndarray, threshold: float
) -> OpenSetResult:
    """Metrics from per-query true identity codes, nearest-gallery identity codes and new-scores.

    ``known[i]``: the query's identity occurs in the gallery. ``true_codes`` of unknown queries group
    them for BAUS (use one shared code, e.g. -1, when their identities are not labelled).
    """
    known = np.asarray(known, bool)
    scores = np.asarray(scores, np.float64)
    sp = _split(np.asarray(true_codes), np.asarray(pred_codes), scores, known)
    baks, baus = (float(x[0]) for x in _rates(sp, np.array([threshold], np.float64)))
    return OpenSetResult(
        BAKS=baks,
        BAUS=baus,
        BA_gmean=math.sqrt(baks * baus) if not (math.isnan(baks) or math.isnan(baus)) else math.nan,
        AUROC=auroc(scores, ~known),
        threshold=float(threshold),
        n_known=int(known.sum()),
        n_unknown=int((~known).sum()),
    )


def fit_threshold(true_codes: np.ndarray, pred_codes: np.ndarray, scores: np.ndarray, known: np.ndarray) -> float:
    """The threshold maximising sqrt(BAKS * BAUS) on validation queries (first maximum wins).

    Candidates are -inf and every distinct score; the returned value is moved halfway to the next
    distinct score, which keeps the validation predictions and is less brittle on new data.
    """
    known = np.asarray(known, bool)
    scores = np.asarray(scores, np.float64)
    if known.all() or not known.any():
        raise ValueError("fitting a threshold needs validation queries of both known and unknown identities")
    uniq = np.unique(scores)
    candidates = np.concatenate([[-np.inf], uniq])
    baks, baus = _rates(_split(np.asarray(true_codes), np.asarray(pred_codes), scores, known), candidates)
    best = int(np.argmax(np.sqrt(baks * baus)))
    t = candidates[best]
    if best == 0:
        return float(uniq[0] - max(1.0, abs(uniq[0])) * 1e-6)  # below every score: all "new"
    if best < len(candidates) - 1:
        mid = (t + candidates[best + 1]) / 2
        if t <= mid < candidates[best + 1]:
            t = mid
    return float(t)


def nearest_gallery(
    q_feats: np.ndarray | torch.Tensor,
    g_feats: np.ndarray | torch.Tensor,
    *,
    metric: Metric = "cosine",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest gallery item, its distance) per query; ties -> lowest gallery index."""
    with torch_threads(num_threads), torch.inference_mode():
        q, g = PreparedFeatures(q_feats, metric, device), PreparedFeatures(g_feats, metric, device)
        idx, dist = [], []
        for _, _, d in iter_feature_blocks(q, g, chunk_size or rows_per_block(len(g), None)):
            i = torch.argmin(d, dim=1)
            idx.append(i.cpu().numpy())
            dist.append(d.gather(1, i[:, None])[:, 0].double().cpu().numpy())
    return np.concatenate(idx).astype(np.int64), np.concatenate(dist)


@dataclass(frozen=True, eq=False)
class OpenSetScores:
    """Per-query inputs to the open-set metrics."""

    true_codes: np.ndarray
    pred_codes: np.ndarray
    scores: np.ndarray
    known: np.ndarray


def open_set_scores(
    q_feats: np.ndarray | torch.Tensor,
    g_feats: np.ndarray | torch.Tensor,
    q_ids: np.ndarray,
    g_ids: np.ndarray,
    **kwargs,
) -> OpenSetScores:
    """Nearest-neighbour identity and new-score per query; ``q_ids`` may hold None for unlabelled."""
    q_codes, g_codes = encode_labels(q_ids, g_ids)
    if (g_codes < 0).any():
        raise ValueError("every gallery item needs an identity")
    nn, dist = nearest_gallery(q_feats, g_feats, **kwargs)
    known = np.isin(q_codes, g_codes) & (q_codes >= 0)
    return OpenSetScores(q_codes, g_codes[nn], dist, known)


def evaluate_open_set(
    q_feats: np.ndarray | torch.Tensor,
    g_feats: np.ndarray | torch.Tensor,
    q_ids: np.ndarray,
    g_ids: np.ndarray,
    *,
    threshold: float,
    **kwargs,
) -> OpenSetResult:
    """BAKS / BAUS / their geometric mean / AUROC at a threshold fitted beforehand on validation data."""
    s = open_set_scores(q_feats, g_feats, q_ids, g_ids, **kwargs)
    return open_set_metrics(s.true_codes, s.pred_codes, s.scores, s.known, threshold)
