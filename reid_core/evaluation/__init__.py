"""Re-ID evaluation: exact fast-reid metrics in bounded memory, dataset protocols, re-ranking, TTA.

Pure numpy / scipy / torch (no Ray, no MLflow), so it runs in any worker or notebook.

- ``evaluate_rank``: ``eval_market1501`` on a distance matrix (stable tie-breaking by gallery order).
- ``evaluate_features``: the same from features, block by block, never holding the Q x G matrix.
- ``evaluate_manifest``: protocols "atrw", "disjoint", "probe_gallery", "open_set" on a manifest.
- ``k_reciprocal_rerank`` / ``evaluate_reranked``: sparse k-reciprocal re-ranking.
- ``flip_embed``: flip test-time augmentation.
"""

from reid_core.evaluation.chunked import evaluate_features, rank_features
from reid_core.evaluation.distances import METRICS, pairwise_distance
from reid_core.evaluation.open_set import (
    OpenSetResult,
    auroc,
    evaluate_open_set,
    fit_threshold,
    nearest_gallery,
    open_set_metrics,
    open_set_scores,
)
from reid_core.evaluation.protocols import (
    PROTOCOLS,
    AtrwResult,
    atrw_query_lists,
    evaluate_atrw,
    evaluate_manifest,
    evaluate_probe_gallery,
    evaluate_roles,
)
from reid_core.evaluation.ranking import QueryRanks, RankResult, evaluate_rank, rank_queries, summarize
from reid_core.evaluation.relations import Relations, build_relations, encode_labels, market_relations
from reid_core.evaluation.rerank import evaluate_reranked, iter_k_reciprocal_rerank, k_reciprocal_rerank
from reid_core.evaluation.tta import flip_embed

__all__ = [
    "METRICS",
    "PROTOCOLS",
    "AtrwResult",
    "OpenSetResult",
    "QueryRanks",
    "RankResult",
    "Relations",
    "atrw_query_lists",
    "auroc",
    "build_relations",
    "encode_labels",
    "evaluate_atrw",
    "evaluate_features",
    "evaluate_manifest",
    "evaluate_open_set",
    "evaluate_probe_gallery",
    "evaluate_rank",
    "evaluate_reranked",
    "evaluate_roles",
    "fit_threshold",
    "flip_embed",
    "iter_k_reciprocal_rerank",
    "k_reciprocal_rerank",
    "market_relations",
    "nearest_gallery",
    "open_set_metrics",
    "open_set_scores",
    "pairwise_distance",
    "rank_features",
    "rank_queries",
    "summarize",
]
