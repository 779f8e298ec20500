"""Exact rank-based re-ID metrics (mAP, CMC, mINP) from the ranks of the positives only.

The definition is fast-reid / torchreid ``eval_market1501``: smaller distance = better; junk items
(same identity and same camera) are removed from each query's ranking; AP is non-interpolated, the
mean over positives of precision at each positive's rank; CMC@k = first positive within the top k;
mINP = (number of positives) / (rank of the last positive).

Ties: the ranking is the **stable** sort of each query's distances (``np.argsort(kind="stable")``),
i.e. tied items keep gallery order. Peers use an unstable argsort, so on tied distances their numbers
depend on the sort implementation; ours depend only on the gallery order.

How: AP needs only each positive's rank, i.e. the number of non-junk items that sort before it under
the order (distance, gallery index). Per block of queries every distance is put into one of ``n_bins``
bins by a monotone map; a per-row histogram counts the items in lower bins (all strictly closer), and
only items that share a bin with some positive are compared exactly. Junk items before a positive are
subtracted. This is exact for any input (ties and infinities included) and costs a few passes over the
block instead of a sort of every row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from reid_core.evaluation.distances import iter_matrix_blocks, rows_per_block
from reid_core.evaluation.relations import Relations, market_relations

NoPositivePolicy = Literal["skip", "zero"]
APMode = Literal["standard", "trapezoid"]

_MAX_JOIN_PAIRS = 1 << 22  # bounds the memory of the exact same-bin comparisons


@dataclass(frozen=True, eq=False)
class QueryRanks:
    """For each query, the sorted 1-based ranks of its positives in its junk-free ranking (CSR)."""

    ptr: np.ndarray
    ranks: np.ndarray

    @property
    def n_queries(self) -> int:
        return len(self.ptr) - 1

    def n_positives(self) -> np.ndarray:
        return np.diff(self.ptr)


@dataclass(frozen=True, eq=False)
class RankResult:
    """Summary over queries. ``ap`` is per query (NaN where the query had no positive)."""

    mAP: float
    cmc: np.ndarray
    mINP: float
    n_queries: int
    n_valid_queries: int
    ap: np.ndarray = field(repr=False)
    no_positive: str = "skip"
    ap_mode: str = "standard"

    def rank(self, k: int) -> float:
        """CMC at rank k (1-based)."""
        return float(self.cmc[k - 1])

    def as_dict(self, ranks: Iterable[int] = (1, 5, 10)) -> dict[str, float]:
        out = {"mAP": self.mAP, "mINP": self.mINP}
        out.update({f"rank{k}": self.rank(k) for k in ranks if k <= len(self.cmc)})
        return out


# ---------------------------------------------------------------------------------------------------
# Ranks of the positives in one block of queries


class Workspace:
    """Scratch tensors reused from block to block.

    A fresh multi-MB tensor costs a page fault per 4 KB page on first touch, about as much as a pass
    over it; the block passes are memory-bound, so reusing buffers saves a large share of their time.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        n = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            buf = self._buffers[name] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(shape)


def default_n_bins(n_gallery: int) -> int:
    """About 8 items per bin, as a power of two in [64, 8192]."""
    return int(min(8192, max(64, 2 ** round(math.log2(max(n_gallery, 1) / 8)))))


def _finite_range(d: torch.Tensor) -> tuple[float, float, bool]:
    """(min, max) over the finite distances, and whether every distance is finite."""
    lo, hi = (t.item() for t in torch.aminmax(d))
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError("distances contain NaN; check the features or the distance matrix")
    if math.isinf(lo) or math.isinf(hi):
        finite = d[torch.isfinite(d)]
        if finite.numel() == 0:
            return 0.0, 0.0, False
        return finite.min().item(), finite.max().item(), False
    return lo, hi, True


def _row_bins(d: torch.Tensor, n_bins: int, ws: Workspace) -> torch.Tensor:
    """Flat bin id per distance: row * (n_bins + 1) + a monotone (non-decreasing) bin in 0..n_bins.

    Within a row a lower bin means strictly closer. int32 keeps the passes cheap: CPU index_add_ /
    index_select take int32 indices at full speed (int64 scatter/gather paths are 2-3x slower).
    """
    n_rows, n_gallery = d.shape
    dtype = torch.int32 if n_rows * (n_bins + 1) < 2**31 else torch.int64
    bins = ws.get("bins", d.shape, dtype, d.device)
    lo, hi, all_finite = _finite_range(d)
    scale = n_bins / (hi - lo) if hi > lo else 0.0
    if not (0.0 < scale < 1e30) or not math.isfinite(scale * (hi - lo)):
        bins.zero_()
    else:
        # (d - lo) * scale: the subtraction is >= 0 and each correctly rounded step is monotone. In
        # float32/64 finite values land in [0, n_bins + tiny], i.e. bins 0..n_bins, so only inf (or half
        # precision) needs the extra clamping pass. copy_ to an integer tensor truncates (= floor here).
        x = torch.sub(d, lo, out=ws.get("scaled", d.shape, d.dtype, d.device)).mul_(scale)
        if not all_finite or d.dtype not in (torch.float32, torch.float64):
            x.clamp_(0, n_bins)
        bins.copy_(x)
    offsets = torch.arange(0, n_rows * (n_bins + 1), n_bins + 1, dtype=dtype, device=d.device)
    return bins.add_(offsets[:, None]).view(-1)


def _count_before(
    pkey: np.ndarray, v: np.ndarray, pcol: np.ndarray, skey: np.ndarray, sd: np.ndarray, scol: np.ndarray
) -> np.ndarray:
    """For each positive p: #{s : skey[s] == pkey[p] and (sd[s], scol[s]) < (v[p], pcol[p])}.

    ``skey`` must be sorted. The lexicographic comparison is the stable-argsort order. NumPy on
    purpose: these arrays are small, and torch's thread pool costs more than the work here.
    """
    n = len(pkey)
    out = np.zeros(n, np.int64)
    if n == 0 or len(skey) == 0:
        return out
    lo = np.searchsorted(skey, pkey, "left")
    counts = np.searchsorted(skey, pkey, "right") - lo
    cum = np.cumsum(counts)
    a = 0
    while a < n:  # batches of positives whose joined pairs fit in _MAX_JOIN_PAIRS
        base = int(cum[a - 1]) if a else 0
        b = min(n, max(a + 1, int(np.searchsorted(cum, base + _MAX_JOIN_PAIRS, "right"))))
        c = counts[a:b]
        total = int(cum[b - 1]) - base
        if total:
            p = np.repeat(np.arange(a, b), c)
            s = np.repeat(lo[a:b] - (np.cumsum(c) - c), c) + np.arange(total)
            dv, pv = sd[s], v[p]
            before = (dv < pv) | ((dv == pv) & (scol[s] < pcol[p]))
            out[a:b] = np.bincount(p[before] - a, minlength=b - a)
        a = b
    return out


def block_ranks(
    d: torch.Tensor,
    pos_rows: np.ndarray,
    pos_cols: np.ndarray,
    junk_rows: np.ndarray,
    junk_cols: np.ndarray,
    n_bins: int | None = None,
    workspace: Workspace | None = None,
) -> np.ndarray:
    """1-based rank of each positive (pos_rows[i], pos_cols[i]) within its row's junk-free ranking.

    ``d`` is one block of distances (rows x gallery) on any device; the index arrays are NumPy with
    rows sorted (CSR order). Exact for any distances except NaN (rejected).
    """
    if len(pos_rows) == 0:
        return np.zeros(0, np.int64)
    n_rows, n_gallery = d.shape
    n_bins = n_bins or default_n_bins(n_gallery)
    ws = workspace or Workspace()
    dev = d.device
    d = d.contiguous()
    flat_d = d.view(-1)
    n_slots = n_rows * (n_bins + 1)
    # Whole-block passes on the device: bins, per-row histogram, items sharing a bin with a positive.
    bins = _row_bins(d, n_bins, ws)
    hist = ws.get("hist", (n_slots,), torch.int32, dev).zero_()
    hist.index_add_(0, bins, torch.ones(1, dtype=torch.int32, device=dev).expand(bins.numel()))
    below = torch.cumsum(hist.view(n_rows, n_bins + 1), 1, dtype=torch.int32, out=ws.get(
        "below", (n_rows, n_bins + 1), torch.int32, dev
    )).view(-1).sub_(hist)  # items in strictly lower bins
    pos_flat = torch.from_numpy(pos_rows * n_gallery + pos_cols).to(dev)
    pbin = bins[pos_flat].long()
    flag = ws.get("flag", (n_slots,), torch.bool, dev).zero_()
    flag[pbin] = True
    shared = torch.index_select(flag, 0, bins, out=ws.get("shared", (bins.numel(),), torch.bool, dev))
    if dev.type == "cpu":
        cand = torch.from_numpy(np.flatnonzero(shared.numpy()))  # numpy's nonzero is ~5x faster on CPU
    else:
        cand = torch.nonzero(shared)[:, 0]
    rank, pkey, v, cand_key, cand_d, cand_flat = (
        t.cpu().numpy() for t in (below[pbin], pbin, flat_d[pos_flat], bins[cand], flat_d[cand], cand)
    )
    cand_cols = cand_flat % n_gallery
    rank = rank.astype(np.int64)
    # Exact comparisons with the items in the positive's own bin (keys are row-offset bin ids).
    order = np.argsort(cand_key, kind="stable")
    rank += _count_before(pkey, v, pos_cols, cand_key[order], cand_d[order], cand_cols[order])
    if len(junk_rows):  # junk was counted like any item; take out the junk ranked before each positive
        jd = flat_d[torch.from_numpy(junk_rows * n_gallery + junk_cols).to(dev)].cpu().numpy()
        rank -= _count_before(pos_rows, v, pos_cols, junk_rows, jd, junk_cols)
    return rank + 1


def rank_queries(
    blocks: Iterable[tuple[int, int, torch.Tensor]],
    relations: Relations,
    *,
    drop_closest: bool = False,
    n_bins: int | None = None,
) -> QueryRanks:
    """Ranks of all positives, consuming (start, stop, distance block) in query order.

    ``drop_closest`` removes each query's nearest gallery item (ties: lowest gallery index) from its
    ranking before anything else (the AER probe = gallery convention); if it was a positive, it is
    no longer one.
    """
    n_q, n_g = relations.n_queries, relations.n_gallery
    counts = np.zeros(n_q, np.int64)
    parts: list[np.ndarray] = []
    workspace = Workspace()
    expected = 0
    for start, stop, d in blocks:
        if start != expected or d.shape != (stop - start, n_g):
            raise ValueError(f"distance block {start}:{stop} of shape {tuple(d.shape)} does not fit {n_q}x{n_g}")
        expected = stop
        pr, pc, jr, jc = relations.block(start, stop)
        if drop_closest and n_g:
            pr, pc, jr, jc = _drop_closest(d, pr, pc, jr, jc, n_g)
        ranks = block_ranks(d, pr, pc, jr, jc, n_bins=n_bins, workspace=workspace)
        order = np.argsort(pr * (n_g + 1) + ranks, kind="stable")  # sort ranks within each query
        parts.append(ranks[order])
        counts[start:stop] = np.bincount(pr, minlength=stop - start)
    if expected != n_q:
        raise ValueError(f"distance blocks covered {expected} of {n_q} queries")
    ptr = np.zeros(n_q + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return QueryRanks(ptr, np.concatenate(parts) if parts else np.zeros(0, np.int64))


def _drop_closest(
    d: torch.Tensor, pr: np.ndarray, pc: np.ndarray, jr: np.ndarray, jc: np.ndarray, n_g: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    closest = torch.argmin(d, dim=1).cpu().numpy().astype(np.int64)  # first minimum = stable rank 1
    ckey = np.arange(len(closest), dtype=np.int64) * n_g + closest
    pkey = pr * n_g + pc
    keep = ~np.isin(pkey, ckey)
    jkey = np.union1d(jr * n_g + jc, ckey)
    return pr[keep], pc[keep], jkey // n_g, jkey % n_g


# ---------------------------------------------------------------------------------------------------
# Metrics from ranks


def summarize(
    ranks: QueryRanks,
    *,
    max_rank: int = 50,
    no_positive: NoPositivePolicy = "skip",
    ap_mode: APMode = "standard",
    queries: np.ndarray | None = None,
) -> RankResult:
    """mAP / CMC / mINP over ``queries`` (default: all).

    ``no_positive``: "skip" (fast-reid) leaves queries without a positive out of every average and
    reports how many were valid; "zero" counts them as AP = 0, CMC = 0, INP = 0 (the ATRW script,
    wildlife-datasets). ``ap_mode``: "standard" = non-interpolated AP; "trapezoid" = the layumi /
    Market-1501 MATLAB / AER convention (precision just before and at each hit, averaged).
    """
    if no_positive not in ("skip", "zero"):
        raise ValueError(f"no_positive must be 'skip' or 'zero', got {no_positive!r}")
    if ap_mode not in ("standard", "trapezoid"):
        raise ValueError(f"ap_mode must be 'standard' or 'trapezoid', got {ap_mode!r}")
    if max_rank < 1:
        raise ValueError("max_rank must be >= 1")
    n_pos = ranks.n_positives()
    n_q = len(n_pos)
    query_of = np.repeat(np.arange(n_q), n_pos)
    k = np.arange(len(ranks.ranks)) - np.repeat(ranks.ptr[:-1], n_pos)  # 0-based hit index per query
    r = ranks.ranks.astype(np.float64)
    precision = (k + 1) / r
    if ap_mode == "trapezoid":
        before = np.divide(k, r - 1, out=np.ones_like(r), where=r > 1)
        precision = (precision + before) / 2
    has = n_pos > 0
    first = np.zeros(n_q, np.int64)
    last = np.ones(n_q, np.int64)
    first[has] = ranks.ranks[ranks.ptr[:-1][has]]
    last[has] = ranks.ranks[ranks.ptr[1:][has] - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(has, np.bincount(query_of, weights=precision, minlength=n_q) / n_pos, np.nan)
    inp = np.where(has, n_pos / last, np.nan)
    sel = np.arange(n_q) if queries is None else np.asarray(queries, np.int64)
    if len(sel) == 0:
        raise ValueError("no queries to evaluate")
    valid = has[sel]
    n_valid = int(valid.sum())
    if no_positive == "skip":
        if n_valid == 0:
            raise ValueError(
                f"none of the {len(sel)} queries has a positive gallery item after junk removal; "
                "check identities/cameras, or pass no_positive='zero' to count such queries as AP = 0"
            )
        denom = n_valid
    else:
        denom = len(sel)
    firsts = first[sel][valid]
    cmc = np.zeros(max_rank)
    if n_valid:
        hist = np.bincount(np.minimum(firsts, max_rank + 1) - 1, minlength=max_rank + 1)[:max_rank]
        cmc = np.cumsum(hist) / denom
    return RankResult(
        mAP=float(ap[sel][valid].sum() / denom),
        cmc=cmc,
        mINP=float(inp[sel][valid].sum() / denom),
        n_queries=len(sel),
        n_valid_queries=n_valid,
        ap=ap[sel],
        no_positive=no_positive,
        ap_mode=ap_mode,
    )


def evaluate_rank(
    distmat: np.ndarray | torch.Tensor,
    q_ids: np.ndarray,
    g_ids: np.ndarray,
    q_cams: np.ndarray | None = None,
    g_cams: np.ndarray | None = None,
    max_rank: int = 50,
    *,
    no_positive: NoPositivePolicy = "skip",
    ap_mode: APMode = "standard",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
) -> RankResult:
    """fast-reid ``eval_market1501`` on a (Q x G) distance matrix (smaller = closer).

    Ids may be any integers or strings; ``q_cams``/``g_cams`` None = no camera information (nothing is
    removed, every same-id gallery item is a positive). The CMC array has ``max_rank`` entries even
    when the gallery is smaller (entries past the gallery size repeat the last value). Blocks of
    ``chunk_size`` rows are processed at a time, so only O(chunk_size x G) extra memory is used.
    """
    q_n, g_n = distmat.shape
    if len(q_ids) != q_n or len(g_ids) != g_n:
        raise ValueError(f"distmat is {q_n}x{g_n} but there are {len(q_ids)} query and {len(g_ids)} gallery ids")
    relations = market_relations(q_ids, g_ids, q_cams, g_cams)
    blocks = iter_matrix_blocks(distmat, chunk_size or rows_per_block(g_n, None), device)
    return summarize(rank_queries(blocks, relations), max_rank=max_rank, no_positive=no_positive, ap_mode=ap_mode)
