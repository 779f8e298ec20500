"""Pairwise distances between embeddings, computed a block of query rows at a time.

Smaller is better for every metric. The evaluators only ever see one (rows x gallery) block, so the
full query x gallery matrix never has to exist. Metrics:

- ``cosine``: ``1 - <q/|q|, g/|g|>``; features are L2-normalised once, up front.
- ``euclidean``: ``sqrt(max(|q|^2 + |g|^2 - 2<q, g>, 0))`` (the true distance, as fast-reid).
- ``sqeuclidean``: the same without the square root (torchreid's ``euclidean``). It ranks identically
  to ``euclidean`` except where the root rounds two distinct values together; with small integer
  features it is exact, which the tests use to build exact ties.

float32 features give float32 distances, so two gallery items can tie at float32 resolution where
float64 would separate them; ties are then broken by gallery order (see ``ranking``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

Metric = Literal["cosine", "euclidean", "sqeuclidean"]
METRICS: tuple[str, ...] = ("cosine", "euclidean", "sqeuclidean")

# Default block size in elements (rows x gallery): ~16 MB per float32 block keeps peak memory a small
# multiple of this whatever the gallery size, and is large enough for matmul to run at full speed.
DEFAULT_BLOCK_ELEMENTS = 4 * 1024 * 1024


def as_tensor(x: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """A torch view of ``x`` (no copy for C-contiguous numpy arrays on CPU)."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device) if device is not None else t


class PreparedFeatures:
    """Features ready for ``block``: normalised (cosine) or with squared norms cached (euclidean)."""

    def __init__(self, feats: np.ndarray | torch.Tensor, metric: Metric, device: torch.device | str | None):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
        x = as_tensor(feats, device)
        if x.ndim != 2:
            raise ValueError(f"features must be 2-D (n, dim), got shape {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            x = x.to(torch.float32)
        # One cheap reduction: a NaN or inf anywhere makes the sum non-finite (overflow may too, so
        # only then run the exact element-wise check).
        if not math.isfinite(x.sum().item()) and not bool(torch.isfinite(x).all()):
            raise ValueError("features contain NaN or inf")
        self.metric = metric
        self.x = torch.nn.functional.normalize(x, dim=1) if metric == "cosine" else x
        self.sq = (x * x).sum(1) if metric != "cosine" else None

    def __len__(self) -> int:
        return self.x.shape[0]

    @staticmethod
    def cat(a: PreparedFeatures, b: PreparedFeatures) -> PreparedFeatures:
        """Rows of ``a`` followed by rows of ``b`` (same metric)."""
        out = object.__new__(PreparedFeatures)
        out.metric, out.x = a.metric, torch.cat([a.x, b.x])
        out.sq = torch.cat([a.sq, b.sq]) if a.sq is not None and b.sq is not None else None
        return out

    def rows(self, index: slice | torch.Tensor) -> PreparedFeatures:
        out = object.__new__(PreparedFeatures)
        out.metric, out.x = self.metric, self.x[index]
        out.sq = self.sq[index] if self.sq is not None else None
        return out


def block(q: PreparedFeatures, g: PreparedFeatures, out: torch.Tensor | None = None) -> torch.Tensor:
    """Distances (len(q) x len(g)) between two prepared feature sets of the same metric.

    ``out``: an optional (len(q) x len(g)) buffer to write into (reused across blocks it saves the
    page faults of a fresh multi-MB allocation, which cost about as much as a pass over it).
    """
    if q.metric != g.metric:
        raise ValueError("query and gallery features were prepared for different metrics")
    if q.x.dtype != g.x.dtype:
        raise ValueError(f"query and gallery dtypes differ ({q.x.dtype} vs {g.x.dtype}); cast one of them")
    shape = (len(q), len(g))
    if q.metric == "cosine":
        # 1 - q @ g.T in one BLAS call (beta * 1 + alpha * q @ g.T), no extra pass over the block.
        one = torch.ones((), dtype=q.x.dtype, device=q.x.device).expand(shape)
        return torch.addmm(one, q.x, g.x.T, alpha=-1.0, out=out) if out is not None else torch.addmm(
            one, q.x, g.x.T, alpha=-1.0
        )
    base = q.sq[:, None].expand(shape)
    d = torch.addmm(base, q.x, g.x.T, alpha=-2.0, out=out) if out is not None else torch.addmm(
        base, q.x, g.x.T, alpha=-2.0
    )
    d.add_(g.sq[None, :]).clamp_(min=0)
    return d.sqrt_() if q.metric == "euclidean" else d


def pair_distance(x: PreparedFeatures, rows: np.ndarray, cols: np.ndarray, batch: int = 1 << 16) -> np.ndarray:
    """Distances of the listed pairs (rows[i], cols[i]) within one prepared set, as float64 NumPy."""
    out = np.empty(len(rows), np.float64)
    for s in range(0, len(rows), batch):
        r = torch.from_numpy(np.asarray(rows[s : s + batch], np.int64)).to(x.x.device)
        c = torch.from_numpy(np.asarray(cols[s : s + batch], np.int64)).to(x.x.device)
        dot = (x.x[r] * x.x[c]).sum(1)
        if x.metric == "cosine":
            d = 1 - dot
        else:
            d = (x.sq[r] + x.sq[c] - 2 * dot).clamp_(min=0)
            d = d.sqrt_() if x.metric == "euclidean" else d
        out[s : s + batch] = d.double().cpu().numpy()
    return out


def pairwise_distance(
    q_feats: np.ndarray | torch.Tensor,
    g_feats: np.ndarray | torch.Tensor,
    metric: Metric = "cosine",
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The full (Q x G) distance matrix; only for problems that fit in memory (tests, small sets)."""
    return block(PreparedFeatures(q_feats, metric, device), PreparedFeatures(g_feats, metric, device))


# Matmul with few query rows re-packs the whole gallery per call (12 s instead of 6 s for 3,368 x
# 159,130 x 512 at 26 rows): blocks get at least this many rows, up to MAX_BLOCK_ELEMENTS.
MIN_BLOCK_ROWS = 128
MAX_BLOCK_ELEMENTS = 64 * 1024 * 1024


def rows_per_block(n_gallery: int, block_elements: int | None) -> int:
    """Query rows per block: ~``block_elements`` distances, but >= MIN_BLOCK_ROWS while that fits."""
    g = max(1, n_gallery)
    return max(1, (block_elements or DEFAULT_BLOCK_ELEMENTS) // g, min(MIN_BLOCK_ROWS, MAX_BLOCK_ELEMENTS // g))


def iter_feature_blocks(
    q: PreparedFeatures, g: PreparedFeatures, chunk_size: int
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(start, stop, distances of query rows start:stop against the whole gallery).

    Every block is written into the same buffer: consume a block before asking for the next.
    """
    buf = torch.empty((min(chunk_size, len(q)), len(g)), dtype=q.x.dtype, device=q.x.device)
    for start in range(0, len(q), chunk_size):
        stop = min(start + chunk_size, len(q))
        yield start, stop, block(q.rows(slice(start, stop)), g, out=buf[: stop - start])


def iter_matrix_blocks(
    distmat: np.ndarray | torch.Tensor, chunk_size: int, device: torch.device | str | None = None
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Row blocks of a precomputed distance matrix, as zero-copy torch views where possible."""
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries x gallery), got shape {tuple(distmat.shape)}")
    for start in range(0, distmat.shape[0], chunk_size):
        stop = min(start + chunk_size, distmat.shape[0])
        d = as_tensor(distmat[start:stop], device)
        yield start, stop, d if torch.is_floating_point(d) else d.to(torch.float64)
