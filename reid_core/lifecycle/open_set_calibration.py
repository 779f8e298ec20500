"""The open-set threshold of a model: calibrated on the validation split when the model is published,
stored on its registered version, read by ``identify``.

Validation individuals are split in two: "unknown" ones (all their images are queries, absent from the
gallery) and "known" ones (their gallery-role images are the gallery and their query-role images the
queries, as ``identify`` sees a gallery; without roles, the first image of each entity is the gallery).
Each query's new-individual score is its cosine distance to the nearest gallery image
(``evaluation.open_set``); per split the threshold maximises sqrt(BAKS * BAUS). A validation split has
few individuals, so which ones are "unknown" moves the threshold a lot (0.22 to 0.38 over the six ways
of choosing 2 of 4 on the demo's tiger model): the stored threshold is the median over up to
``partitions`` such choices, and the metrics stored with it are their means at that threshold. They are
on validation queries and so optimistic: the README measures ``identify`` on held-out test individuals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import polars as pl

from reid_core.evaluation.open_set import fit_threshold, open_set_metrics, open_set_scores

THRESHOLD_TAG = "identify.threshold"  # model version tag: the cosine distance above which a query is new
IDENTITY_COLUMN = "individual"  # identify names individuals, whichever flank the gallery holds


@dataclass(frozen=True)
class OpenSetSplit:
    gallery: np.ndarray  # row indices
    queries: np.ndarray
    unknown_individuals: tuple[str, ...]


@dataclass(frozen=True)
class Calibration:
    threshold: float
    BAKS: float
    BAUS: float
    AUROC: float
    n_known_queries: int
    n_unknown_queries: int
    partitions: int = 1
    threshold_range: tuple[float, float] = (0.0, 0.0)

    def tags(self) -> dict[str, str]:
        """The model version tags: the threshold, and what it gave on validation."""
        low, high = self.threshold_range
        return {THRESHOLD_TAG: repr(self.threshold), "identify.val_BAKS": f"{self.BAKS:.4f}",
                "identify.val_BAUS": f"{self.BAUS:.4f}", "identify.val_AUROC": f"{self.AUROC:.4f}",
                "identify.val_queries": f"{self.n_known_queries} known + {self.n_unknown_queries} unknown",
                "identify.val_partitions": f"{self.partitions} (thresholds {low:.4f} to {high:.4f})"}


def _unknown_sets(individuals: list[str], count: int, partitions: int, seed: int) -> list[tuple[str, ...]]:
    """Up to ``partitions`` distinct choices of ``count`` unknown individuals (all of them when few)."""
    every = list(itertools.combinations(individuals, count))
    if len(every) <= partitions:
        return every
    chosen = np.random.default_rng(seed).choice(len(every), size=partitions, replace=False)
    return [every[i] for i in sorted(chosen)]


def split_open_set(rows: pl.DataFrame, unknown: tuple[str, ...]) -> OpenSetSplit:
    """Queries and gallery over ``rows`` with the ``unknown`` individuals left out of the gallery."""
    indexed = rows.with_row_index("_row")
    is_unknown = indexed[IDENTITY_COLUMN].cast(pl.String).is_in(list(unknown))
    roles = indexed["role"] if "role" in indexed.columns else pl.Series([None] * indexed.height, dtype=pl.String)
    if roles.is_in(["gallery", "both"]).any() and (roles == "query").any():
        in_gallery = ~is_unknown & (roles != "query").fill_null(True)
    else:
        first = indexed.sort("image_id").group_by("entity", maintain_order=True).agg(pl.col("_row").first())["_row"]
        in_gallery = ~is_unknown & indexed["_row"].is_in(first.implode())
    rows_index = indexed["_row"].to_numpy()
    return OpenSetSplit(rows_index[in_gallery.to_numpy()], rows_index[~in_gallery.to_numpy()], tuple(unknown))


def calibrate(features: np.ndarray, rows: pl.DataFrame, unknown_fraction: float = 0.5, partitions: int = 10,
              seed: int = 0) -> Calibration:
    """The threshold on ``rows``' embeddings (``features[i]`` embeds ``rows[i]``)."""
    individuals = sorted(rows[IDENTITY_COLUMN].cast(pl.String).unique().to_list())
    if len(individuals) < 2:
        raise ValueError(f"calibrating an open-set threshold needs >= 2 validation individuals, got {len(individuals)}")
    count = min(len(individuals) - 1, max(1, round(unknown_fraction * len(individuals))))
    ids = rows[IDENTITY_COLUMN].cast(pl.String).to_numpy()
    scored, thresholds = [], []
    for unknown in _unknown_sets(individuals, count, partitions, seed):
        split = split_open_set(rows, unknown)
        s = open_set_scores(features[split.queries], features[split.gallery], ids[split.queries], ids[split.gallery])
        scored.append(s)
        thresholds.append(fit_threshold(s.true_codes, s.pred_codes, s.scores, s.known))
    threshold = float(np.median(thresholds))
    results = [open_set_metrics(s.true_codes, s.pred_codes, s.scores, s.known, threshold) for s in scored]
    return Calibration(threshold, *(float(np.mean([getattr(r, k) for r in results])) for k in ("BAKS", "BAUS", "AUROC")),
                       results[0].n_known, results[0].n_unknown, len(results), (min(thresholds), max(thresholds)))
