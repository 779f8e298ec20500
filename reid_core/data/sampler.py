"""A P x K identity batch sampler that is rank-aware for DDP.

Ray Train's ``prepare_data_loader`` would replace a sampler with a DistributedSampler, which breaks
identity batches, so this sampler splits batches across ranks itself: every rank gets the same number
of batches, batches are disjoint across ranks, and the whole plan is a pure function of
(labels, seed, epoch). Use it as ``DataLoader(dataset, batch_sampler=sampler)`` with
``prepare_data_loader(..., add_dist_sampler=False)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKBatchSampler(Sampler[list[int]]):
    """Batches of ``p`` identities x ``k`` images each.

    Identities with fewer than ``k`` images are sampled with replacement (fast-reid/torchreid do the
    same), so every batch has exactly ``p * k`` indices. Within an epoch an identity contributes
    ``ceil(n_images / k)`` chunks of ``k`` distinct images: a shuffle of all its images, the last chunk
    topped up with other images of the same identity. So every image is seen at least once per epoch
    (torchreid's ``n // k`` drops the remainder: with 6 images and K=4 a third of the data, and half the
    batches, went unused every epoch). Large identities still contribute more chunks; the P identities
    of a batch are drawn with probability proportional to their remaining chunks, so large identities
    are spread over the epoch instead of being left over (and dropped) at its end.
    """

    def __init__(
        self,
        labels: Sequence,
        p: int,
        k: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"P and K must be >= 1, got P={p}, K={k}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.p, self.k = p, k
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.epoch = 0
        self._cached_plan: tuple[int, list[list[int]]] | None = None
        _, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
        self._indices_by_id = [np.flatnonzero(codes == c) for c in range(codes.max() + 1 if len(codes) else 0)]
        n_ids = len(self._indices_by_id)
        if n_ids < p:
            raise ValueError(
                f"cannot fill a batch: {n_ids} identities in the data but P={p} identities per batch are needed. "
                f"Fix: lower P (--ids-per-batch) to at most {n_ids}, or train on more identities."
            )
        n_batches = len(self._plan(0))
        if n_batches < num_replicas:
            raise ValueError(
                f"cannot give every one of {num_replicas} ranks a batch: the data makes {n_batches} batches of "
                f"P={p} x K={k}. Fix: use fewer workers, a smaller P or K, or more data."
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _plan(self, epoch: int) -> list[list[int]]:
        """All batches of one epoch, for all ranks: identical on every rank for the same (seed, epoch)."""
        if self._cached_plan is not None and self._cached_plan[0] == epoch:
            return self._cached_plan[1]
        rng = np.random.default_rng([self.seed, epoch])
        chunks: list[list[np.ndarray]] = []
        for idx in self._indices_by_id:
            if len(idx) < self.k:
                idx = rng.choice(idx, size=self.k, replace=True)
            else:
                idx = rng.permutation(idx)
                short = -len(idx) % self.k
                if short:  # top up the last chunk with images not already in it (there are >= k of them)
                    full = len(idx) - (self.k - short)
                    idx = np.concatenate([idx, rng.choice(idx[:full], size=short, replace=False)])
            n_chunks = len(idx) // self.k
            chunks.append([idx[i * self.k:(i + 1) * self.k] for i in range(n_chunks)])
        batches: list[list[int]] = []
        available = [i for i, c in enumerate(chunks) if c]
        while len(available) >= self.p:
            weights = np.array([len(chunks[i]) for i in available], dtype=float)
            chosen = rng.choice(available, size=self.p, replace=False, p=weights / weights.sum())
            batch = []
            for identity in chosen:
                batch.extend(int(i) for i in chunks[identity].pop())
            batches.append(batch)
            available = [i for i in available if chunks[i]]
        self._cached_plan = (epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._plan(self.epoch)
        per_rank = len(batches) // self.num_replicas
        yield from batches[self.rank::self.num_replicas][:per_rank]

    def __len__(self) -> int:
        return len(self._plan(self.epoch)) // self.num_replicas


class RandomBatchSampler(Sampler[list[int]]):
    """Shuffled batches of ``batch_size`` (the last partial batch dropped), split across DDP ranks like
    ``PKBatchSampler``: same batch count on every rank, disjoint batches, a pure function of
    (n, seed, epoch). For losses that need no identity structure in a batch (ArcFace, CE)."""

    def __init__(self, n: int, batch_size: int, *, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if n // batch_size < num_replicas:
            raise ValueError(
                f"cannot give every one of {num_replicas} ranks a batch: {n} images make {n // batch_size} "
                f"batches of {batch_size}. Fix: use fewer workers, a smaller batch size, or more data."
            )
        self.n, self.batch_size = n, batch_size
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        batches = [order[i:i + self.batch_size].tolist() for i in range(0, len(self) * self.num_replicas
                                                                         * self.batch_size, self.batch_size)]
        yield from batches[self.rank::self.num_replicas]

    def __len__(self) -> int:
        return self.n // self.batch_size // self.num_replicas
