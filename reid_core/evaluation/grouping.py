"""Photos of new individuals grouped into proposed individuals (``new-1``, ``new-2``, ...), so a person
confirms a group instead of photo by photo; the adjusted Rand index (AnimalCLEF 2026) scores it.

Average-linkage agglomerative clustering on 1 - the fused pairwise probability: two groups merge while
their photos are, on average, more likely the same individual than the operating point says.
"""

from __future__ import annotations

import numpy as np

PREFIX = "new-"


def group_photos(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Group ids (0, 1, ... by size, largest first) from a symmetric matrix of fused pair probabilities
    (NaN: not compared, counted as different); photos join while the mean probability exceeds ``threshold``."""
    from sklearn.cluster import AgglomerativeClustering

    n = probability.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    if n == 1:
        return np.zeros(1, np.int64)
    p = np.nan_to_num(np.asarray(probability, np.float64), nan=0.0)
    distance = 1.0 - (p + p.T) / 2
    np.fill_diagonal(distance, 0.0)
    labels = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                     distance_threshold=1.0 - threshold).fit_predict(distance.clip(0.0, 1.0))
    # Relabel by group size (largest first, then first photo), so names are stable and meaningful.
    groups, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    rank = np.empty(len(groups), np.int64)
    rank[order] = np.arange(len(groups))
    return rank[np.searchsorted(groups, labels)]


def group_names(groups: np.ndarray) -> list[str]:
    return [f"{PREFIX}{g + 1}" for g in groups]


def adjusted_rand(truth, predicted) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(list(truth), list(predicted)))
