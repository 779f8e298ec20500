"""Scores to probabilities, their fusion, the operating point as the gallery grows, grouping new photos,
and the calibration stored with a run and read back (no pickles: JSON breakpoints)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reid_core import tracking
from reid_core.evaluation.calibration import (
    Fusion,
    IsotonicMap,
    OpenSetCalibration,
    fit_isotonic,
    fuse,
    leave_one_out,
    operating_point,
    predicted_rates,
    rank_individuals,
)
from reid_core.evaluation.grouping import adjusted_rand, group_names, group_photos
from reid_core.lifecycle import open_set_calibration
from reid_core.settings import Settings


def noisy_pairs(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.2
    return np.where(same, rng.normal(0.7, 0.15, n), rng.normal(0.3, 0.15, n)), same


def test_isotonic_map_is_monotone_a_probability_and_round_trips_through_json():
    scores, same = noisy_pairs()
    mapped = fit_isotonic(scores, same)
    grid = np.linspace(-1, 2, 1001)  # beyond the data on both sides: clipped
    p = mapped(grid)
    assert np.all(np.diff(p) >= 0) and p.min() >= 0 and p.max() <= 1
    assert p[0] < 0.05 and p[-1] > 0.95  # it separates the two kinds
    again = IsotonicMap.from_dict(json.loads(json.dumps(mapped.to_dict())))
    assert np.array_equal(again(grid), p)
    with pytest.raises(ValueError, match="both kinds"):
        fit_isotonic(scores[~same], same[~same])


def test_fusion_is_the_mean_of_the_scorers_available():
    fused = fuse([np.array([0.2, 0.4, 0.9]), np.array([0.6, np.nan, 0.1]), None])
    assert fused == pytest.approx([0.4, 0.4, 0.5])


def test_the_operating_point_rises_with_the_gallery_and_keeps_new_animals_new():
    rng = np.random.default_rng(1)
    genuine, impostor = rng.beta(6, 2, 400), rng.beta(2, 6, 4000)
    points = {n: operating_point(genuine, impostor, n) for n in (1, 10, 100, 1000)}
    assert points[1] < points[10] < points[100] < points[1000]
    # Simulated galleries of fresh draws: a new animal's best impostor stays below t(N) at least as often as
    # predicted (the exponential tail errs towards "new"), and most new animals stay new at every size.
    for n in (10, 100, 1000):
        simulated = np.mean(rng.beta(2, 6, (2000, n)).max(axis=1) <= points[n])
        baks, baus = predicted_rates(genuine, impostor, n, np.array([points[n]]))
        assert simulated >= baus[0] - 0.05 and simulated > 0.8
        assert baks[0] > (0.5 if n == 10 else 0.1)  # the own individual must also beat n - 1 impostors
    # A fixed pair-level point lets nearly every new animal through a gallery of 100.
    assert np.mean(rng.beta(2, 6, (2000, 100)).max(axis=1) <= points[1]) < 0.05


def test_leave_one_out_gives_each_query_its_own_and_the_other_individuals():
    codes = np.array([0, 0, 1, 1, 2])
    fused = np.full((5, 5), 0.1)
    fused[0, 1] = fused[1, 0] = 0.9
    fused[2, 3] = fused[3, 2] = 0.8
    genuine, impostor = leave_one_out(fused, codes)
    assert sorted(genuine) == [0.8, 0.8, 0.9, 0.9]  # image 4 has no other image of its individual
    assert len(impostor) == 4 * 2 + 2 and set(impostor) == {0.1}


def test_ranking_by_fused_probability_breaks_ties_by_similarity_and_puts_unscored_last():
    similarity = np.array([[0.9, 0.5, 0.8, 0.95]])
    fused = np.array([[0.7, 0.7, 0.9, np.nan]])  # image 3 was not shortlisted
    codes = np.array([0, 1, 2, 3])
    top, probability, images = rank_individuals(fused, similarity, codes, 4, 4)
    assert top.tolist() == [[2, 0, 1, 3]] and images.tolist() == [[2, 0, 1, 3]]
    assert probability[0, :3].tolist() == [0.9, 0.7, 0.7]


def test_new_photos_are_grouped_by_individual():
    truth = np.array([0, 0, 0, 1, 1, 2])
    rng = np.random.default_rng(0)
    probability = np.where(truth[:, None] == truth[None, :], rng.uniform(0.6, 0.9, (6, 6)), rng.uniform(0, 0.2, (6, 6)))
    probability[0, 1] = np.nan  # not compared: one missing pair does not split a group on average linkage
    groups = group_photos(probability, threshold=0.4)
    assert adjusted_rand(truth, groups) == 1.0
    assert group_names(groups)[:4] == ["new-1", "new-1", "new-1", "new-2"]  # largest group first
    assert group_photos(np.zeros((1, 1)), 0.4).tolist() == [0]


def test_the_calibration_is_stored_with_a_run_and_read_back(tmp_path):
    settings = Settings.from_env({"REID_HOME": str(tmp_path)})
    settings.ensure_dirs()
    scores, same = noisy_pairs()
    fusion = Fusion(("global",), tuple(np.linspace(0.5, 1, 9)), tuple(np.linspace(0, 0.6, 33)), {"queries": 9})
    calibration = OpenSetCalibration({"global": fit_isotonic(scores, same)}, {"none": fusion}, {"pairs": 2000})
    run_id = tracking.start_run("reid-calibration-test", "test", "store", settings=settings)
    tags = open_set_calibration.store(calibration, run_id, settings)
    tracking.end_run(run_id, settings=settings)
    back = open_set_calibration.load(run_id, tags, settings)
    assert back == calibration
    assert back.fusion("none").operating_point(50) == calibration.fusion("none").operating_point(50)
    assert open_set_calibration.load(run_id, {}, settings) is None
    with pytest.raises(KeyError, match="sift"):
        back.fusion("sift")
