"""Model evaluation re-ranked by local-feature matching, as ``identify`` ranks: the ``fused.*`` metrics.

For a species' test split: each image with its ``shortlist`` most similar test images by the global model,
those pairs matched by the local matcher, both scores calibrated to P(same individual) and averaged, and the
ranking re-scored by that fused probability (``evaluation.calibration.fused_distance``), then scored with the
species' own protocol. The calibration is fitted on the same rows' validation split (individuals the model
did not train on when it is the training species; the species being identified in a transfer matrix),
exactly as ``publish`` fits the one ``identify`` uses. Shortlists are chosen without labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from reid_core.data.dataset import images_to_evaluate
from reid_core.engine.evaluate import protocol_for
from reid_core.evaluation.calibration import fuse, fused_distance, neighbour_pairs
from reid_core.evaluation.protocols import evaluate_manifest
from reid_core.lifecycle import open_set_calibration

PREFIX = "fused."
Embed = Callable[[pl.DataFrame, str], np.ndarray]  # (rows, image column) -> one embedding per row


@dataclass(frozen=True)
class LocalRerank:
    """Which matcher verifies the shortlist (with which options, e.g. weights), and how many images per query."""

    matcher: str = "sift"
    shortlist: int = 50
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from reid_core.matching.registry import MATCHERS

        if self.matcher not in MATCHERS or self.matcher == "none":
            raise ValueError(f"matcher {self.matcher!r}: re-ranking needs one of "
                             f"{', '.join(m for m in MATCHERS if m != 'none')}")
        if self.shortlist < 1:
            raise ValueError(f"the shortlist must hold >= 1 image, got {self.shortlist}")


def _normalised(features: np.ndarray) -> np.ndarray:
    return features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)


def fused_metrics(embed: Embed, rows: pl.DataFrame, use_masked: bool, rerank: LocalRerank,
                  protocol: str | None = None) -> dict[str, float]:
    """``fused.<metric>`` of the ``test`` rows of ``rows`` with the calibration fitted on its ``val`` rows;
    empty (with a warning) when the validation split cannot calibrate or the protocol has no ranking."""
    test = images_to_evaluate(rows.filter(pl.col("split") == "test"), use_masked, "test")
    protocol = protocol or protocol_for(test.rows)
    if protocol == "open_set":
        warnings.warn("no re-ranked metrics for the open_set protocol (its known/new decision is identify's, "
                      "measured by benchmarks/identify_open_set.py)", stacklevel=2)
        return {}
    val = images_to_evaluate(rows.filter(pl.col("split") == "val"), use_masked, "val")
    calibration = open_set_calibration.calibrate_validation(lambda r: embed(r, val.column), val.rows, val.column,
                                                            (rerank.matcher,),
                                                            options={rerank.matcher: rerank.options})
    if calibration is None:  # calibrate_validation warned why
        return {}
    features = _normalised(embed(test.rows, test.column))
    similarity = features @ features.T
    first, second = neighbour_pairs(similarity, rerank.shortlist)
    scores = open_set_calibration.local_scores(rerank.matcher, test.rows[test.column].to_list(), first, second,
                                               rerank.options)
    fused = np.full(similarity.shape, np.nan)
    fused[first, second] = fused[second, first] = fuse([
        calibration.probability(open_set_calibration.GLOBAL, similarity[first, second]),
        calibration.probability(rerank.matcher, scores)])
    metrics = evaluate_manifest(None, test.rows, protocol, split=None, distmat=fused_distance(similarity, fused))
    return {f"{PREFIX}{k}": float(v) for k, v in metrics.items()} | {f"{PREFIX}pairs_matched": float(len(first))}
