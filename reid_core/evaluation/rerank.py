"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) in memory linear in Q + G.

The standard implementation (layumi / fast-reid / torchreid / AER ``re_ranking``) builds the dense
(Q+G) x (Q+G) distance matrix, its full argsort and a dense V matrix: several (Q+G)^2 arrays, which is
what runs out of memory on large galleries. This one computes the same quantities sparsely:

1. One chunked pass over (Q+G) x (Q+G) distances keeps, per row, the max squared distance (the row
   normaliser) and the top max(k1+1, k2) neighbours - never the full matrix.
2. k-reciprocal sets, their expansion (the 2/3 overlap rule with round(k1/2)-reciprocal sets) and the
   Gaussian weights V are built as a sparse matrix; the weights' distances are computed per pair.
3. Local query expansion (mean of V over the k2 nearest neighbours) is a sparse product.
4. The Jaccard distance sum_k min(V[q,k], V[g,k]) is a sparse join, one block of queries at a time.
5. final = (1 - lambda) * Jaccard + lambda * d(q, g)^2 / rowmax(q), yielded block by block.

Inputs follow the reference: it squares the distances it is given and normalises each row by its
maximum, so ``metric="euclidean"`` here equals passing Euclidean distance matrices to the reference.
Memory is O((Q+G) * k1 * k2) for the sparse matrices plus one (chunk x (Q+G)) block; the dense
(Q x G) output of ``k_reciprocal_rerank`` is refused above ``max_dense_bytes`` (use the iterator or
``evaluate_reranked`` instead). The extra cost is time: the neighbour pass is O((Q+G)^2 * dim).
Ties between equal distances at the k-th neighbour are broken arbitrarily (as by the reference's
unstable argsort).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from reid_core.evaluation.chunked import torch_threads
from reid_core.evaluation.distances import (
    Metric,
    PreparedFeatures,
    block,
    pair_distance,
    rows_per_block,
)
from reid_core.evaluation.ranking import APMode, NoPositivePolicy, RankResult, rank_queries, summarize
from reid_core.evaluation.relations import market_relations

DEFAULT_MAX_DENSE_BYTES = 2 << 30
_MAX_JOIN_PAIRS = 1 << 22


def _neighbours(x: PreparedFeatures, k: int, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(top-k neighbour indices by squared distance, nearest first; max squared distance) per row."""
    idx, rowmax = [], []
    for start in range(0, len(x), chunk_size):
        sq = block(x.rows(slice(start, start + chunk_size)), x).square_()
        rowmax.append(sq.amax(1).double().cpu().numpy())
        idx.append(torch.topk(sq, k, dim=1, largest=False, sorted=True).indices.cpu().numpy())
    return np.concatenate(idx).astype(np.int64), np.concatenate(rowmax)


def _reciprocal(nbr: np.ndarray, pad: int, chunk: int = 8192) -> np.ndarray:
    """Row i of ``nbr`` keeping only j with i among j's own neighbours (same width); others = ``pad``."""
    out = np.full(nbr.shape, pad, np.int64)
    for s in range(0, len(nbr), chunk):
        rows = nbr[s : s + chunk]
        back = nbr[rows]  # (B, k, k): neighbours of each neighbour
        mask = (back == np.arange(s, s + len(rows))[:, None, None]).any(-1)
        out[s : s + chunk] = np.where(mask, rows, pad)
    return out


def _expanded_sets(k_rec: np.ndarray, half_rec: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """CSR-style (rows, cols) of each row's k-reciprocal set expanded by the 2/3-overlap rule."""
    rows_out, cols_out = [], []
    for s in range(0, len(k_rec), chunk):
        kr = k_rec[s : s + chunk]  # (B, k1+1), pad -1
        hc = half_rec[np.maximum(kr, 0)]  # (B, k1+1, kh+1), pad -2 (never equals a kr entry)
        h_size = (hc >= 0).sum(-1)
        overlap = (hc[..., None] == kr[:, None, None, :]).any(-1).sum(-1)
        take = (kr >= 0) & (overlap > 2.0 / 3 * h_size)  # the reference's exact comparison
        cand = np.where(take[..., None], hc, -1).reshape(len(kr), -1)
        allc = np.sort(np.concatenate([kr, np.maximum(cand, -1)], axis=1), axis=1)
        keep = allc >= 0
        keep[:, 1:] &= allc[:, 1:] != allc[:, :-1]
        r, c = np.nonzero(keep)
        rows_out.append(r + s)
        cols_out.append(allc[r, c])
    return np.concatenate(rows_out), np.concatenate(cols_out)


class _Reranker:
    """Sparse state shared by the query blocks: V after query expansion, and row normalisers."""

    def __init__(self, q: PreparedFeatures, g: PreparedFeatures, k1: int, k2: int, chunk_size: int | None):
        import scipy.sparse as sp  # lazy, like every optional heavy import of this package

        n_q, n = len(q), len(q) + len(g)
        x = PreparedFeatures.cat(q, g)
        self.x, self.n_q, self.chunk = x, n_q, chunk_size or rows_per_block(n, None)
        kk, kh = min(k1 + 1, n), min(int(np.around(k1 / 2.0)) + 1, n)
        nbr, self.rowmax = _neighbours(x, max(kk, min(k2, n)), self.chunk)
        rows, cols = _expanded_sets(_reciprocal(nbr[:, :kk], -1), _reciprocal(nbr[:, :kh], -2))
        # Gaussian kernel of the normalised squared distance, rows summing to one (float32 like the
        # reference; its weights are exp(-d^2 / rowmax) over the expanded set).
        w = np.exp(-pair_distance(x, rows, cols) ** 2 / self.rowmax[rows])
        w /= np.bincount(rows, weights=w, minlength=n)[rows]
        v = sp.csr_matrix((w.astype(np.float32), (rows, cols)), shape=(n, n))
        if k2 > 1:  # local query expansion: average V over the k2 nearest neighbours (self included)
            k2e = min(k2, n)
            qe = sp.csr_matrix(
                (np.full(n * k2e, 1.0 / k2e, np.float32), (np.repeat(np.arange(n), k2e), nbr[:, :k2e].ravel())),
                shape=(n, n),
            )
            v = (qe @ v).tocsr()
        v.eliminate_zeros()
        self.v_query = v[:n_q]
        self.v_gallery = v[n_q:].tocsc()  # column k -> gallery rows sharing neighbour k

    def jaccard(self, start: int, stop: int) -> np.ndarray:
        """1 - sum(min)/(2 - sum(min)) for queries start:stop against every gallery item (float64)."""
        n_g = self.v_gallery.shape[0]
        vq = self.v_query[start:stop].tocoo()
        colptr, g_rows, g_vals = self.v_gallery.indptr, self.v_gallery.indices, self.v_gallery.data
        counts = colptr[vq.col + 1] - colptr[vq.col]
        acc = np.zeros((stop - start) * n_g, np.float64)
        cum = np.cumsum(counts)
        a = 0
        while a < len(counts):  # bounded batches of (query nnz x gallery nnz) pairs
            base = int(cum[a - 1]) if a else 0
            b = min(len(counts), max(a + 1, int(np.searchsorted(cum, base + _MAX_JOIN_PAIRS, "right"))))
            c = counts[a:b]
            total = int(c.sum())
            if total:
                src = np.repeat(np.arange(a, b), c)
                pos = np.repeat(colptr[vq.col[a:b]] - (np.cumsum(c) - c), c) + np.arange(total)
                m = np.minimum(vq.data[src], g_vals[pos])
                acc += np.bincount(vq.row[src] * n_g + g_rows[pos], weights=m, minlength=len(acc))
            a = b
        acc = acc.reshape(stop - start, n_g)
        return 1 - acc / (2 - acc)

    def blocks(self, lambda_value: float) -> Iterator[tuple[int, int, torch.Tensor]]:
        g = self.x.rows(slice(self.n_q, None))
        for start in range(0, self.n_q, self.chunk):
            stop = min(start + self.chunk, self.n_q)
            with torch.inference_mode():  # per block, not across the yield (the caller's mode is its own)
                sq = block(self.x.rows(slice(start, stop)), g).square_().double().cpu().numpy()
            original = sq / self.rowmax[start:stop, None]
            final = self.jaccard(start, stop) * (1 - lambda_value) + original * lambda_value
            yield start, stop, torch.from_numpy(final.astype(np.float32))


def iter_k_reciprocal_rerank(
    q_feats: np.ndarray | torch.Tensor,
    g_feats: np.ndarray | torch.Tensor,
    *,
    metric: Metric = "euclidean",
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Re-ranked distances as (start, stop, float32 block of query rows x gallery), in query order."""
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ValueError("need k1 >= 1, k2 >= 1 and 0 <= lambda_value <= 1")
    with torch.inference_mode():
        q = PreparedFeatures(q_feats, metric, device)
        g = PreparedFeatures(g_feats, metric, device)
        reranker = _Reranker(q, g, k1, k2, chunk_size)
    yield from reranker.blocks(lambda_value)


def k_reciprocal_rerank(
    q_feats: np.ndarray | torch.Tensor,
    g_feats: np.ndarray | torch.Tensor,
    *,
    metric: Metric = "euclidean",
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
) -> np.ndarray:
    """The dense (Q x G) float32 re-ranked distance matrix; refused above ``max_dense_bytes``."""
    need = len(q_feats) * len(g_feats) * 4
    if need > max_dense_bytes:
        raise MemoryError(
            f"the re-ranked {len(q_feats)}x{len(g_feats)} matrix needs {need / 2**30:.2f} GiB "
            f"(> max_dense_bytes={max_dense_bytes / 2**30:.2f} GiB); use iter_k_reciprocal_rerank or "
            "evaluate_reranked, which work block by block, or raise max_dense_bytes"
        )
    out = np.empty((len(q_feats), len(g_feats)), np.float32)
    for start, stop, d in iter_k_reciprocal_rerank(
        q_feats, g_feats, metric=metric, k1=k1, k2=k2, lambda_value=lambda_value, chunk_size=chunk_size,
        device=device,
    ):
        out[start:stop] = d.numpy()
    return out


def evaluate_reranked(
    q_feats: np.ndarray | torch.Tensor,
    g_feats: np.ndarray | torch.Tensor,
    q_ids: np.ndarray,
    g_ids: np.ndarray,
    q_cams: np.ndarray | None = None,
    g_cams: np.ndarray | None = None,
    *,
    metric: Metric = "euclidean",
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    max_rank: int = 50,
    no_positive: NoPositivePolicy = "skip",
    ap_mode: APMode = "standard",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    num_threads: int | None = None,
) -> RankResult:
    """``evaluate_features`` on k-reciprocal re-ranked distances, never holding the Q x G matrix."""
    relations = market_relations(q_ids, g_ids, q_cams, g_cams)
    with torch_threads(num_threads):
        blocks = iter_k_reciprocal_rerank(
            q_feats, g_feats, metric=metric, k1=k1, k2=k2, lambda_value=lambda_value, chunk_size=chunk_size,
            device=device,
        )
        ranks = rank_queries(blocks, relations)
    return summarize(ranks, max_rank=max_rank, no_positive=no_positive, ap_mode=ap_mode)
