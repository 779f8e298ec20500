"""Which gallery items are positives and which are junk, per query, stored sparsely.

Only same-identity pairs are ever enumerated (plus a few explicit extras such as "the query itself"),
so the structure is O(#same-identity pairs), never O(Q x G). Everything not listed is a negative.
Junk items are removed from the query's ranking altogether (fast-reid: same id and same camera;
ATRW: same entity, same camera, near frame; probe = gallery: the query itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

JunkRule = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(query rows, gallery cols) of same-identity pairs -> boolean mask of the pairs that are junk."""


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def encode_labels(*arrays: Sequence | np.ndarray) -> list[np.ndarray]:
    """Map labels of any hashable type to shared int64 codes; missing values (None/NaN) become -1.

    Code -1 never matches anything, not even another -1 (an unknown identity is nobody's positive).
    """
    arrs = [np.asarray(a) for a in arrays]
    if all(a.dtype.kind in "iub" for a in arrs):  # integers: codes are cheap and order-preserving
        flat = np.concatenate([a.ravel() for a in arrs]) if arrs else np.empty(0, np.int64)
        _, inverse = np.unique(flat, return_inverse=True)
    elif all(a.dtype.kind in "U" for a in arrs) or all(a.dtype.kind in "f" for a in arrs):
        flat = np.concatenate([a.ravel() for a in arrs])
        missing = flat != flat if flat.dtype.kind == "f" else np.zeros(len(flat), bool)
        _, inv = np.unique(flat[~missing], return_inverse=True)
        inverse = np.full(len(flat), -1, np.int64)
        inverse[~missing] = inv
    else:  # object / mixed: a dict keeps it simple and tolerant of None
        table: dict[object, int] = {}
        inverse = np.array(
            [-1 if _is_missing(v) else table.setdefault(v, len(table)) for a in arrs for v in a.ravel().tolist()],
            dtype=np.int64,
        )
    out, start = [], 0
    for a in arrs:
        out.append(inverse[start : start + a.size].astype(np.int64).reshape(a.shape))
        start += a.size
    return out


@dataclass(frozen=True, eq=False)
class Relations:
    """Per query, sorted gallery columns of its positives and of its junk, in CSR form."""

    n_gallery: int
    pos_ptr: np.ndarray
    pos_idx: np.ndarray
    junk_ptr: np.ndarray
    junk_idx: np.ndarray

    @property
    def n_queries(self) -> int:
        return len(self.pos_ptr) - 1

    def n_positives(self) -> np.ndarray:
        return np.diff(self.pos_ptr)

    def block(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pos rows, pos cols, junk rows, junk cols) for queries start:stop; rows are local (from 0)."""
        def part(ptr: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            counts = np.diff(ptr[start : stop + 1])
            rows = np.repeat(np.arange(stop - start, dtype=np.int64), counts)
            return rows, idx[ptr[start] : ptr[stop]]

        return (*part(self.pos_ptr, self.pos_idx), *part(self.junk_ptr, self.junk_idx))


def _csr(keys: np.ndarray, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique pair keys (row * n_cols + col) -> (ptr, cols)."""
    rows, cols = np.divmod(keys, max(n_cols, 1))
    ptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=ptr[1:])
    return ptr, cols.astype(np.int64)


def same_label_pairs(q_codes: np.ndarray, g_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (query, gallery) pairs with equal non-negative codes, sorted by query then gallery index."""
    order = np.argsort(g_codes, kind="stable")  # stable: gallery indices stay ascending within a label
    sorted_codes = g_codes[order]
    lo = np.searchsorted(sorted_codes, q_codes, "left")
    hi = np.searchsorted(sorted_codes, q_codes, "right")
    counts = np.where(q_codes >= 0, hi - lo, 0)
    total = int(counts.sum())
    rows = np.repeat(np.arange(len(q_codes), dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    offsets = np.repeat(lo - first, counts) + np.arange(total, dtype=np.int64)
    return rows, order[offsets].astype(np.int64)


def build_relations(
    q_codes: np.ndarray,
    g_codes: np.ndarray,
    *,
    junk: JunkRule | None = None,
    extra_junk: tuple[np.ndarray, np.ndarray] | None = None,
) -> Relations:
    """Positives = same-label pairs not marked junk; junk = marked pairs plus ``extra_junk`` pairs.

    ``extra_junk`` (e.g. each query's own gallery index) is junk even when the labels differ.
    """
    q_codes, g_codes = np.asarray(q_codes, np.int64), np.asarray(g_codes, np.int64)
    n_q, n_g = len(q_codes), len(g_codes)
    rows, cols = same_label_pairs(q_codes, g_codes)
    is_junk = junk(rows, cols) if junk is not None and len(rows) else np.zeros(len(rows), bool)
    pos_keys = rows[~is_junk] * n_g + cols[~is_junk]
    junk_keys = rows[is_junk] * n_g + cols[is_junk]
    if extra_junk is not None and len(extra_junk[0]):
        extra = np.unique(np.asarray(extra_junk[0], np.int64) * n_g + np.asarray(extra_junk[1], np.int64))
        pos_keys = pos_keys[~np.isin(pos_keys, extra, assume_unique=True)]
        junk_keys = np.union1d(junk_keys, extra)
    pos_ptr, pos_idx = _csr(pos_keys, n_q, n_g)
    junk_ptr, junk_idx = _csr(np.sort(junk_keys), n_q, n_g)
    return Relations(n_g, pos_ptr, pos_idx, junk_ptr, junk_idx)


def same_camera_rule(q_cams: np.ndarray, g_cams: np.ndarray) -> JunkRule:
    """fast-reid / torchreid: a same-identity gallery item from the query's camera is junk."""
    q_cams, g_cams = np.asarray(q_cams), np.asarray(g_cams)
    return lambda rows, cols: (q_cams[rows] == g_cams[cols]) & (q_cams[rows] >= 0)


def market_relations(
    q_ids: Sequence | np.ndarray,
    g_ids: Sequence | np.ndarray,
    q_cams: Sequence | np.ndarray | None,
    g_cams: Sequence | np.ndarray | None,
    *,
    self_index: np.ndarray | None = None,
) -> Relations:
    """The fast-reid rule; cams None = no camera information, nothing removed.

    ``self_index[i]`` (>= 0) is query i's own gallery column, removed as junk (probe = gallery).
    """
    if (q_cams is None) != (g_cams is None):
        raise ValueError("give both q_cams and g_cams, or neither (None = no camera information)")
    q_codes, g_codes = encode_labels(q_ids, g_ids)
    rule = None
    if q_cams is not None:
        qc, gc = encode_labels(q_cams, g_cams)
        _check_lengths(q_codes, qc, "q_ids", "q_cams")
        _check_lengths(g_codes, gc, "g_ids", "g_cams")
        rule = same_camera_rule(qc, gc)
    extra = None
    if self_index is not None:
        self_index = np.asarray(self_index, np.int64)
        has = self_index >= 0
        extra = (np.flatnonzero(has), self_index[has])
    return build_relations(q_codes, g_codes, junk=rule, extra_junk=extra)


def _check_lengths(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} entries but {name_b} has {len(b)}")
