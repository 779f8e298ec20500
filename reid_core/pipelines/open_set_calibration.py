"""The open-set threshold of a model: calibrated on the validation split when the model is published,
stored on its registered version, read by ``identify``.

Validation individuals are split in two: "unknown" ones (all their images are queries, absent from the
gallery) and "known" ones (the first image of each of their entities is the gallery, the rest are
queries). Each query's new-individual score is its cosine distance to the nearest gallery image
(``evaluation.open_set``); the threshold maximises sqrt(BAKS * BAUS) on these queries. The metrics
stored with it are on the same validation queries, so they are optimistic: a test of the open-set
behaviour must use other individuals (``identify`` on held-out ones does).
"""

from __future__ import annotations

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

    def tags(self) -> dict[str, str]:
        """The model version tags: the threshold, and what it gave on validation."""
        return {THRESHOLD_TAG: repr(self.threshold), "identify.val_BAKS": f"{self.BAKS:.4f}",
                "identify.val_BAUS": f"{self.BAUS:.4f}", "identify.val_AUROC": f"{self.AUROC:.4f}",
                "identify.val_queries": f"{self.n_known_queries} known + {self.n_unknown_queries} unknown"}


def split_open_set(rows: pl.DataFrame, unknown_fraction: float = 0.5, seed: int = 0) -> OpenSetSplit:
    """Queries and gallery over ``rows`` with ``unknown_fraction`` of the individuals left out of the gallery."""
    individuals = sorted(rows[IDENTITY_COLUMN].cast(pl.String).unique().to_list())
    if len(individuals) < 2:
        raise ValueError(f"calibrating an open-set threshold needs >= 2 validation individuals, got {len(individuals)}")
    count = min(len(individuals) - 1, max(1, round(unknown_fraction * len(individuals))))
    unknown = set(np.random.default_rng(seed).permutation(individuals)[:count].tolist())
    indexed = rows.with_row_index("_row").sort("image_id")
    first_of_entity = indexed.group_by("entity", maintain_order=True).agg(pl.col("_row").first())["_row"]
    is_unknown = indexed[IDENTITY_COLUMN].cast(pl.String).is_in(sorted(unknown))
    gallery = indexed.filter(~is_unknown & pl.col("_row").is_in(first_of_entity.implode()))["_row"]
    queries = indexed.filter(~pl.col("_row").is_in(gallery.implode()))["_row"]
    return OpenSetSplit(np.sort(gallery.to_numpy()), np.sort(queries.to_numpy()), tuple(sorted(unknown)))


def calibrate(features: np.ndarray, rows: pl.DataFrame, unknown_fraction: float = 0.5, seed: int = 0) -> Calibration:
    """The threshold on ``rows``' embeddings (``features[i]`` embeds ``rows[i]``)."""
    split = split_open_set(rows, unknown_fraction, seed)
    ids = rows[IDENTITY_COLUMN].cast(pl.String).to_numpy()
    scores = open_set_scores(features[split.queries], features[split.gallery], ids[split.queries], ids[split.gallery])
    threshold = fit_threshold(scores.true_codes, scores.pred_codes, scores.scores, scores.known)
    result = open_set_metrics(scores.true_codes, scores.pred_codes, scores.scores, scores.known, threshold)
    return Calibration(threshold, result.BAKS, result.BAUS, result.AUROC, result.n_known, result.n_unknown)
