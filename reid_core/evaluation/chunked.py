"""Features in, metrics out, without ever holding the full query x gallery distance matrix.

Query rows are processed in blocks of ``chunk_size``: one matmul gives the block's distances, the
positives' exact ranks are taken from it (see ``ranking``), and the buffers are reused for the next
block. Peak extra memory is a few (chunk_size x G) arrays (about 13 bytes per distance) plus the
normalised features; the default block is ~4 M distances (~16 MB in float32), or 128 query rows for
galleries above ~33 k (matmul needs that many rows to run at full speed). Results equal
``evaluate_rank`` on the full matrix computed by ``distances.pairwise_distance`` (exactly so for
float64 features; float32 features give float32 distances and therefore float32-level ties, broken
by gallery order).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from reid_core.evaluation.distances import (
    Metric,
    PreparedFeatures,
    iter_feature_blocks,
    rows_per_block,
)
from reid_core.evaluation.ranking import (
    APMode,
    NoPositivePolicy,
    QueryRanks,
    RankResult,
    rank_queries,
    summarize,
)
from reid_core.evaluation.relations import Relations, market_relations


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (None = leave it alone)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rank_features(
    q_feats: np.ndarray | torch.Tensor,
    g_feats: np.ndarray | torch.Tensor,
    relations: Relations,
    *,
    metric: Metric = "cosine",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    drop_closest: bool = False,
    num_threads: int | None = None,
) -> QueryRanks:
    """Ranks of every positive (per ``relations``) computed block by block from features."""
    with torch_threads(num_threads), torch.inference_mode():
        q = PreparedFeatures(q_feats, metric, device)
        g = PreparedFeatures(g_feats, metric, device)
        if q.x.shape[1] != g.x.shape[1]:
            raise ValueError(f"query features are {q.x.shape[1]}-d but gallery features are {g.x.shape[1]}-d")
        rows = chunk_size or rows_per_block(len(g), None)
        return rank_queries(iter_feature_blocks(q, g, rows), relations, drop_closest=drop_closest)


def evaluate_features(
    q_feats: np.ndarray | torch.Tensor,
    g_feats: np.ndarray | torch.Tensor,
    q_ids: np.ndarray,
    g_ids: np.ndarray,
    q_cams: np.ndarray | None = None,
    g_cams: np.ndarray | None = None,
    *,
    metric: Metric = "cosine",
    max_rank: int = 50,
    no_positive: NoPositivePolicy = "skip",
    ap_mode: APMode = "standard",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    num_threads: int | None = None,
) -> RankResult:
    """fast-reid ``eval_market1501`` computed from features, in bounded memory.

    ``metric``: "cosine" (features are L2-normalised), "euclidean" or "sqeuclidean".
    ``chunk_size``: query rows per block (default: ~4 M distances, at least 128 rows while <= 64 M).
    ``device``: where the matmul and ranking run ("cuda" works; inputs are moved there).
    ``num_threads``: torch intra-op threads for this call (default: torch's current setting).
    """
    if len(q_ids) != len(q_feats) or len(g_ids) != len(g_feats):
        raise ValueError(
            f"{len(q_feats)} query / {len(g_feats)} gallery features but {len(q_ids)} / {len(g_ids)} ids"
        )
    relations = market_relations(q_ids, g_ids, q_cams, g_cams)
    ranks = rank_features(
        q_feats, g_feats, relations, metric=metric, chunk_size=chunk_size, device=device, num_threads=num_threads
    )
    return summarize(ranks, max_rank=max_rank, no_positive=no_positive, ap_mode=ap_mode)
