"""Scores to probabilities of "same individual", their fusion, and a known/new operating point that
follows the gallery's size.

- Each scorer (the global model's cosine similarity, a local matcher's verified-match count) is mapped
  to P(same individual) by isotonic regression fitted on labelled pairs (WildFusion's calibration). The
  map is kept as its breakpoints (plain JSON) and evaluated with ``np.interp``: monotone, no pickles.
- The fused probability of a pair is the mean of the calibrated probabilities of the scorers available.
- Known / new: a query is known when the fused probability of its best gallery individual exceeds an
  operating point. The best *impostor* of a new animal is the maximum over N individuals, so it comes
  closer as the gallery grows: with impostor per-individual probabilities of distribution F, a new query
  stays below t with probability F(t)^N. We keep F and the genuine distribution G (per query, the
  probability of its own individual) from validation as quantiles, and choose t for the gallery at hand:
  the t maximising sqrt(BAKS(t) x BAUS(t)) with BAUS = F(t)^N and BAKS = E_g[g > t] F(g)^(N-1) (the own
  individual must also beat the N-1 impostors). Independence of a query's impostors is an approximation
  (a poor query is far from everyone); the benchmark measures how well it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

QUANTILES = 4097  # stored points of each score distribution (the impostors' tail decides large galleries)
TAIL = 0.1  # the impostors' upper fraction modelled as an exponential tail
PRIOR_PAIRS = 2.0  # pseudo-pairs at the base rate at each end of an isotonic map
MIN_TAIL = 20  # samples the tail needs; fewer: the empirical distribution, never reaching 1


@dataclass(frozen=True)
class IsotonicMap:
    """A monotone non-decreasing map from a raw score to a probability: the isotonic fit's breakpoints."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, scores: np.ndarray | Sequence[float]) -> np.ndarray:
        return np.interp(np.asarray(scores, np.float64), self.x, self.y)  # clips outside [x0, xn]

    def to_dict(self) -> dict:
        return {"x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: dict) -> IsotonicMap:
        return cls(tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"]))


def fit_isotonic(scores: np.ndarray, same: np.ndarray, prior_pairs: float = PRIOR_PAIRS) -> IsotonicMap:
    """P(same | score) from labelled pairs (``same`` boolean), increasing, clipped outside the data.

    ``prior_pairs`` pseudo-pairs at the base rate sit at each end of the score range: the highest and lowest
    scores of a validation split are a handful of pairs, and plain isotonic regression would call them
    certain (0 or 1), so that one confidently wrong scorer outvotes the others in the fusion."""
    from sklearn.isotonic import IsotonicRegression

    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    if len(scores) == 0 or same.all() or not same.any():
        raise ValueError(f"calibration needs pairs of both kinds, got {int(same.sum())} same and "
                         f"{int((~same).sum())} different")
    base = float(same.mean())
    x = np.r_[scores, scores.min(), scores.max()]
    target = np.r_[same.astype(np.float64), base, base]
    weight = np.r_[np.ones(len(scores)), prior_pairs, prior_pairs]
    model = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
        x, target, sample_weight=weight)
    x, y = model.X_thresholds_, model.y_thresholds_
    if len(x) == 1:  # every score alike: a constant map
        x, y = np.r_[x, x + 1e-9], np.r_[y, y]
    return IsotonicMap(tuple(map(float, x)), tuple(map(float, y)))


def fuse(probabilities: Sequence[np.ndarray | None]) -> np.ndarray:
    """The mean of the calibrated probabilities available (None or NaN entries: scorer not run)."""
    stack = np.stack([np.asarray(p, np.float64) for p in probabilities if p is not None])
    counts = np.isfinite(stack).sum(axis=0)
    total = np.where(np.isfinite(stack), stack, 0.0).sum(axis=0)
    return np.divide(total, counts, out=np.full(total.shape, np.nan), where=counts > 0)


def individual_scores(pair_scores: np.ndarray, gallery_codes: np.ndarray, individuals: int) -> np.ndarray:
    """(queries, individuals): each individual's best pair score (NaN pairs ignored; -inf when none)."""
    best = np.full((pair_scores.shape[0], individuals), -np.inf)
    filled = np.where(np.isfinite(pair_scores), pair_scores, -np.inf)
    for code in range(individuals):
        columns = np.flatnonzero(gallery_codes == code)
        if len(columns):
            best[:, code] = filled[:, columns].max(axis=1)
    return best


def shortlist(similarity: np.ndarray, size: int) -> np.ndarray:
    """(queries, min(size, gallery)) gallery indices of each query's most similar images, best first."""
    k = min(size, similarity.shape[1])
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k < similarity.shape[1] else \
        np.tile(np.arange(similarity.shape[1]), (similarity.shape[0], 1))
    order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def neighbour_pairs(similarity: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, second), first < second: each image of a square similarity matrix with its ``size`` most
    similar others (itself excluded), each unordered pair once."""
    masked = np.array(similarity, np.float64)
    np.fill_diagonal(masked, -np.inf)
    near = shortlist(masked, min(size, len(masked) - 1))
    pairs = {(min(i, j), max(i, j)) for i, row in enumerate(near) for j in row.tolist() if i != j}
    ordered = np.array(sorted(pairs), np.int64).reshape(-1, 2)
    return ordered[:, 0], ordered[:, 1]


def fused_distance(similarity: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """A distance matrix (smaller = closer) that ranks by the fused probability where a pair was matched
    locally (finite ``fused``) and after every such pair by the global similarity; ties of the fused
    probability (isotonic plateaus) are broken by the global similarity. Kept within [0, 3] so float32
    evaluation code still separates probabilities ~1e-4 apart."""
    similarity = np.asarray(similarity, np.float64)
    tie = (1.0 - np.clip(similarity, -1.0, 1.0)) / 2  # in [0, 1], smaller = more similar
    matched = np.isfinite(fused)
    return np.where(matched, (1.0 - np.where(matched, fused, 0.0)) + 1e-4 * tie, 2.0 + tie)


def quantiles(values: np.ndarray, count: int = QUANTILES) -> list[float]:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values) <= count:
        return sorted(map(float, values))
    return list(map(float, np.quantile(values, np.linspace(0, 1, count))))


def _cdf(sample: np.ndarray, at: np.ndarray) -> np.ndarray:
    """P(X <= at) of the empirical distribution ``sample``."""
    return np.searchsorted(np.sort(sample), at, side="right") / max(len(sample), 1)


def impostor_cdf(sample: np.ndarray, at: np.ndarray, tail: float = TAIL) -> np.ndarray:
    """P(impostor <= at): empirical below the ``1 - tail`` quantile, an exponential tail above it (fitted to
    the mean excess). F(t)^N for a large gallery lives in the top few samples, where the empirical
    distribution reaches 1 too early (and the operating point would sit where validation happened to
    have no impostor); the exponential tail keeps F < 1 and errs on the side of calling animals new."""
    sample = np.sort(np.asarray(sample, np.float64))
    at = np.asarray(at, np.float64)
    empirical = _cdf(sample, at)
    excess = sample[sample > np.quantile(sample, 1 - tail)] if len(sample) else sample
    if len(excess) < MIN_TAIL:
        return np.searchsorted(sample, at, side="right") / (len(sample) + 1)  # never 1: conservative
    start = float(np.quantile(sample, 1 - tail))
    rest = len(excess) / len(sample)
    scale = max(float((excess - start).mean()), 1e-6)
    above = 1.0 - rest * np.exp(-(at - start) / scale)
    return np.where(at > start, above, np.minimum(empirical, 1.0 - rest))


def predicted_rates(genuine: np.ndarray, impostor: np.ndarray, individuals: int,
                    thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted BAKS and BAUS at each threshold (known iff best probability > threshold) for a gallery
    of ``individuals`` individuals, from per-individual genuine and impostor probabilities."""
    genuine, impostor = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    n = max(int(individuals), 1)
    baus = impostor_cdf(impostor, thresholds) ** n
    wins = impostor_cdf(impostor, genuine) ** (n - 1)  # the own individual beats every impostor
    if not len(genuine):
        return np.full(len(thresholds), np.nan), baus
    order = np.argsort(genuine)
    above = np.r_[np.cumsum(wins[order][::-1])[::-1], 0.0]  # sum of wins over genuine[order][i:]
    baks = above[np.searchsorted(genuine[order], thresholds, side="right")] / len(genuine)
    return baks, baus


def operating_point(genuine: Sequence[float], impostor: Sequence[float], individuals: int) -> float:
    """The threshold maximising the predicted sqrt(BAKS x BAUS) for a gallery of ``individuals``."""
    genuine, impostor = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    grid = np.unique(np.r_[genuine, impostor, np.linspace(0.0, 1.0, 1001)])
    baks, baus = predicted_rates(genuine, impostor, individuals, grid)
    score = np.nan_to_num(np.sqrt(baks * baus), nan=-1.0)
    best = int(np.argmax(score))
    # The middle of the best plateau (known iff > t, so the plateau runs up to the next grid value): the
    # widest margin on both sides, where validation separates the two kinds with room to spare.
    last = best
    while last + 1 < len(grid) and score[last + 1] >= score[best] - 1e-12:
        last += 1
    return float(grid[best] if last + 1 == len(grid) else (grid[best] + grid[last + 1]) / 2)


@dataclass(frozen=True)
class Fusion:
    """What validation said about one combination of scorers (``global`` plus a matcher or none)."""

    scorers: tuple[str, ...]
    genuine: tuple[float, ...]  # quantiles of the own individual's fused probability, per query
    impostor: tuple[float, ...]  # quantiles of other individuals' fused probabilities, per (query, individual)
    validation: dict = field(default_factory=dict)  # counts and metrics, for people

    def operating_point(self, individuals: int) -> float:
        return operating_point(self.genuine, self.impostor, individuals)

    def to_dict(self) -> dict:
        return {"scorers": list(self.scorers), "genuine": list(self.genuine), "impostor": list(self.impostor),
                "validation": self.validation}

    @classmethod
    def from_dict(cls, data: dict) -> Fusion:
        return cls(tuple(data["scorers"]), tuple(map(float, data["genuine"])), tuple(map(float, data["impostor"])),
                   dict(data.get("validation", {})))


@dataclass(frozen=True)
class OpenSetCalibration:
    """A model version's calibration: a map per scorer and, per matcher (``none``: global only), the
    genuine / impostor distributions that give the operating point for any gallery size."""

    scorers: dict[str, IsotonicMap]
    fusions: dict[str, Fusion]
    notes: dict = field(default_factory=dict)
    FORMAT = 1

    def probability(self, scorer: str, scores: np.ndarray) -> np.ndarray:
        if scorer not in self.scorers:
            raise KeyError(f"no calibration for scorer {scorer!r}; calibrated: {sorted(self.scorers)}")
        return self.scorers[scorer](scores)

    def fusion(self, matcher: str) -> Fusion:
        if matcher not in self.fusions:
            raise KeyError(f"the model version was calibrated for matchers {sorted(self.fusions)}, not {matcher!r}")
        return self.fusions[matcher]

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "scorers": {k: v.to_dict() for k, v in self.scorers.items()},
                "fusions": {k: v.to_dict() for k, v in self.fusions.items()}, "notes": self.notes}

    @classmethod
    def from_dict(cls, data: dict) -> OpenSetCalibration:
        if data.get("format") != cls.FORMAT:
            raise ValueError(f"calibration format {data.get('format')!r}, this code reads {cls.FORMAT}")
        return cls({k: IsotonicMap.from_dict(v) for k, v in data["scorers"].items()},
                   {k: Fusion.from_dict(v) for k, v in data["fusions"].items()}, dict(data.get("notes", {})))


def leave_one_out(fused: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor per-individual probabilities from a square matrix of fused pair probabilities
    over labelled images (``codes``): each image a query against all the others as the gallery."""
    fused = np.array(fused, np.float64)
    np.fill_diagonal(fused, np.nan)
    individuals = int(codes.max()) + 1
    genuine, impostor = [], []
    for i in range(len(codes)):
        others = np.ones(len(codes), bool)
        others[i] = False
        best = individual_scores(fused[i:i + 1, others], codes[others], individuals)[0]
        present = np.isfinite(best)
        if present[codes[i]]:
            genuine.append(best[codes[i]])
        impostor.extend(best[present & (np.arange(individuals) != codes[i])])
    return np.asarray(genuine), np.asarray(impostor)


def rank_individuals(fused: np.ndarray, tie_break: np.ndarray, gallery_codes: np.ndarray, individuals: int,
                     top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query the top-k individual codes by the fused probability of their best image, that probability
    and the index of that best image. Ties, which isotonic plateaus make common, are broken by ``tie_break``
    (the global similarity, or a re-ranked one; |values| < 100); pairs with NaN probability (never
    shortlisted) rank after every scored one."""
    # Lexicographic through one float: probabilities within ~1e-7 of each other tie, then tie_break decides.
    key = np.where(np.isfinite(fused), fused, -1.0) * 1e9 + tie_break
    best_key = individual_scores(key, gallery_codes, individuals)
    k = min(top_k, individuals)
    top = np.argsort(-best_key, axis=1, kind="stable")[:, :k]
    best_image = np.empty((len(key), individuals), np.int64)
    for code in range(individuals):
        columns = np.flatnonzero(gallery_codes == code)
        best_image[:, code] = columns[key[:, columns].argmax(axis=1)]
    images = np.take_along_axis(best_image, top, axis=1)
    probability = np.take_along_axis(fused, images, axis=1)
    return top, np.where(np.isfinite(probability), probability, 0.0), images
