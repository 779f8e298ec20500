"""A model version's identification calibration, fitted when the model is published and read by ``identify``.

Fitted on the validation split, whose individuals the model did not train on (training individuals'
pairs would make the global similarity look far more certain than it is on new photos):
- pairs: every validation image against its ``shortlist`` most similar validation images by the global
  model (as ``identify`` sees pairs: only shortlisted pairs are matched locally) plus every same-individual
  pair; at most ``max_images`` images, so publishing stays quick;
- one isotonic map per scorer (the global cosine similarity and each configured matcher's score), fitted
  on the same pairs so their probabilities share a base rate and their mean is meaningful;
- per matcher (``none`` = the global model alone), the genuine and impostor distributions of the fused
  per-individual probability, each validation image a query against all the others: the operating point
  for a gallery of any size follows from them (``evaluation.calibration``).
Stored as a plain JSON artifact of the model's run (``CALIBRATION_ARTIFACT``), named by the version tag
``CALIBRATION_TAG``; nothing is pickled.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import polars as pl

from reid_core import tracking
from reid_core.data import files as rio
from reid_core.evaluation.calibration import (
    Fusion,
    OpenSetCalibration,
    fit_isotonic,
    fuse,
    leave_one_out,
    neighbour_pairs,
    operating_point,
    quantiles,
)
from reid_core.settings import Settings

CALIBRATION_TAG = "identify.calibration"  # model version tag: run artifact path of the calibration JSON
CALIBRATION_ARTIFACT = "identify/calibration.json"
IDENTITY_COLUMN = "individual"  # identify names individuals, whichever flank the gallery holds
DEFAULT_MATCHERS = ("sift",)
GLOBAL = "global"
MATCHER_OPTIONS = "matcher_options"  # the calibration's notes: the options (weights) each matcher was fitted with


def read_rgb(uri: str) -> np.ndarray:
    return np.asarray(rio.read_image(uri).convert("RGB"))


def local_scores(matcher: str, uris: list[str], first: np.ndarray, second: np.ndarray,
                 options: dict | None = None) -> np.ndarray:
    """The matcher's score for pairs (uris[first[k]], uris[second[k]]); features extracted once per image."""
    from reid_core.matching.registry import get_matcher

    engine = get_matcher(matcher, options)
    needed = sorted(set(first.tolist()) | set(second.tolist()))
    features = {i: engine.extract(read_rgb(uris[i])) for i in needed}
    return np.array([engine.match(features[a], features[b]).score for a, b in zip(first, second, strict=True)],
                    np.float64)


def calibration_pairs(similarity: np.ndarray, codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) with first < second: each image's ``size`` most similar others and all same-individual pairs."""
    first, second = neighbour_pairs(similarity, size)
    pairs = set(zip(first.tolist(), second.tolist(), strict=True))
    same = np.argwhere(np.triu(codes[:, None] == codes[None, :], k=1))
    pairs |= {(int(i), int(j)) for i, j in same}
    ordered = np.array(sorted(pairs), np.int64).reshape(-1, 2)
    return ordered[:, 0], ordered[:, 1]


def _fusion(scorers: tuple[str, ...], probability: np.ndarray, codes: np.ndarray) -> Fusion:
    genuine, impostor = leave_one_out(probability, codes)
    individuals = int(codes.max()) + 1
    return Fusion(scorers, tuple(quantiles(genuine)), tuple(quantiles(impostor)), {
        "queries": int(len(codes)), "individuals": individuals, "genuine": int(len(genuine)),
        "impostor": int(len(impostor)),
        "operating_points": {str(n): round(operating_point(genuine, impostor, n), 4) for n in (1, 10, 100, 1000)}})


def fit(features: np.ndarray, rows: pl.DataFrame, uris: list[str], matchers: tuple[str, ...] = DEFAULT_MATCHERS,
        *, shortlist_size: int = 20, max_images: int = 200, seed: int = 0,
        options: dict[str, dict] | None = None) -> OpenSetCalibration:
    """The calibration from validation images: ``features[i]`` embeds ``rows[i]``, whose image is ``uris[i]``."""
    individuals = rows[IDENTITY_COLUMN].cast(pl.String).to_numpy()
    if len(set(individuals)) < 2:
        raise ValueError(f"calibration needs >= 2 validation individuals, got {len(set(individuals))}")
    keep = np.arange(len(rows))
    if len(keep) > max_images:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_images, replace=False))
    _, codes = np.unique(individuals[keep], return_inverse=True)
    x = features[keep] / np.linalg.norm(features[keep], axis=1, keepdims=True).clip(1e-12)
    similarity = x @ x.T
    first, second = calibration_pairs(similarity, codes, shortlist_size)
    same = codes[first] == codes[second]
    maps = {GLOBAL: fit_isotonic(similarity[first, second], same)}
    global_p = maps[GLOBAL](similarity)
    fusions = {"none": _fusion((GLOBAL,), global_p, codes)}
    kept_uris = [uris[i] for i in keep]
    for matcher in matchers:
        if matcher == "none":
            continue
        scores = local_scores(matcher, kept_uris, first, second, (options or {}).get(matcher))
        maps[matcher] = fit_isotonic(scores, same)
        fused = np.full(similarity.shape, np.nan)  # pairs never shortlisted are never matched locally
        fused[first, second] = fused[second, first] = fuse([global_p[first, second], maps[matcher](scores)])
        fusions[matcher] = _fusion((GLOBAL, matcher), fused, codes)
    notes = {"fitted_on": "validation split (individuals the model did not train on)", "images": int(len(keep)),
             "pairs": int(len(first)), "same_pairs": int(same.sum()), "shortlist": shortlist_size,
             # A matcher's calibration holds for the weights it was fitted with: identify matches with these.
             MATCHER_OPTIONS: {m: dict((options or {}).get(m) or {}) for m in matchers if m != "none"}}
    return OpenSetCalibration(maps, fusions, notes)


def calibrate_validation(embed, rows: pl.DataFrame, column: str, matchers: tuple[str, ...] = DEFAULT_MATCHERS,
                         **kwargs) -> OpenSetCalibration | None:
    """``fit`` on the validation split's rows (``embed(rows)`` gives their features); None with a warning
    when it has fewer than two individuals."""
    count = rows[IDENTITY_COLUMN].n_unique() if rows.height else 0
    repeated = int((rows[IDENTITY_COLUMN].value_counts()["count"] > 1).sum()) if rows.height else 0
    if count < 2 or repeated < 1:
        warnings.warn(f"no identification calibration: the validation split has {count} individual(s), {repeated} "
                      "with more than one photo (needed: >= 2, >= 1); identify cannot run with this version",
                      stacklevel=2)
        return None
    return fit(embed(rows), rows, rows[column].to_list(), matchers, **kwargs)


def store(calibration: OpenSetCalibration, run_id: str, settings: Settings | None = None) -> dict[str, str]:
    """Log the calibration JSON to the model's run; the version tags that point to it and summarise it."""
    tracking.log_text(run_id, json.dumps(calibration.to_dict(), indent=1), CALIBRATION_ARTIFACT, settings=settings)
    tags = {CALIBRATION_TAG: CALIBRATION_ARTIFACT, "identify.matchers": ",".join(sorted(calibration.fusions))}
    for matcher, fusion in calibration.fusions.items():
        points = fusion.validation.get("operating_points", {})
        tags[f"identify.operating_point.{matcher}"] = ", ".join(f"N={n}: {t}" for n, t in points.items())
    return tags


def matcher_options(calibration: OpenSetCalibration, matcher: str) -> dict:
    """The options (e.g. LightGlue's weights) ``matcher`` was calibrated with; {} for the defaults."""
    return dict(calibration.notes.get(MATCHER_OPTIONS, {}).get(matcher) or {})


def load(run_id: str, tags: dict, settings: Settings | None = None) -> OpenSetCalibration | None:
    """The calibration stored with a model version (its run and tags); None when it has none."""
    artifact = tags.get(CALIBRATION_TAG)
    if not artifact:
        return None
    return OpenSetCalibration.from_dict(json.loads(tracking.load_text(run_id, artifact, settings=settings)))

