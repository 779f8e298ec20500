"""Local-feature matchers (reid_core.matching): SIFT tells individuals apart on synthetic coats, blank
images are results not errors, features round-trip through bytes, LightGlue loads checkpoint files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matching_support import tiger_photo

from reid_core.matching.features import LocalFeatures, PairMatch
from reid_core.matching.registry import MATCHERS, check_options, get_matcher


@pytest.fixture(scope="module")
def sift():
    return get_matcher("sift")  # defaults: the ~100 px crops are upsampled to 256 px, where SIFT finds enough


def test_sift_scores_the_same_individual_above_others(sift, single_torch_thread):
    # Each tiger's flank stripes are its own (reid_core.data.synthetic.tiger): another photo of the same
    # flank (new pose, light, scene) shares them; another tiger's similar stripes agree on no homography.
    query = sift.extract(tiger_photo(0, 0))
    same = sift.match(query, sift.extract(tiger_photo(0, 1))).score
    others = [sift.match(query, sift.extract(tiger_photo(i, 1))).score for i in (1, 2, 3)]
    assert same >= 25
    assert same >= 2 * max(others), (same, others)


def test_sift_blank_image_has_no_keypoints_and_scores_zero(sift):
    blank = sift.extract(np.full((40, 70, 3), 255, np.uint8))
    assert len(blank) == 0 and blank.descriptors.shape == (0, 128)
    real = sift.extract(tiger_photo(0, 0))
    for a, b in ((blank, real), (real, blank), (blank, blank)):
        match = sift.match(a, b)
        assert match.score == 0.0 and match.keypoints_a.shape == (0, 2)


def test_sift_match_keypoints_lie_in_each_image(sift):
    image_a, image_b = tiger_photo(0, 0), tiger_photo(0, 1)
    match = sift.match(sift.extract(image_a), sift.extract(image_b))
    assert match.score == match.matches > 0
    for points, image in ((match.keypoints_a, image_a), (match.keypoints_b, image_b)):
        assert (points >= -0.5).all() and (points <= np.array(image.shape[1::-1]) + 0.5).all()


def test_local_features_round_trip_through_bytes():
    rng = np.random.default_rng(0)
    features = LocalFeatures(rng.random((5, 2), dtype=np.float32), rng.random((5, 128), dtype=np.float32),
                             {"image_size": np.array([64.0, 48.0], np.float32), "scales": np.arange(5.0)})
    back = LocalFeatures.from_bytes(features.to_bytes())
    np.testing.assert_array_equal(back.keypoints, features.keypoints)
    np.testing.assert_array_equal(back.descriptors, features.descriptors)
    assert set(back.extra) == {"image_size", "scales"}
    np.testing.assert_array_equal(back.extra["scales"], features.extra["scales"])
    empty = LocalFeatures.from_bytes(LocalFeatures.empty(128).to_bytes())
    assert empty.keypoints.shape == (0, 2) and empty.descriptors.shape == (0, 128) and empty.extra == {}


def write_checkpoints(tmp_path, kind: str) -> tuple[str, str]:
    """Randomly initialised extractor and LightGlue state_dicts saved as files (nothing downloads)."""
    from kornia.feature import ALIKED, DISK, LightGlue

    torch.manual_seed(0)
    extractor = DISK() if kind == "disk" else ALIKED("aliked-n16")
    conf = {k: v for k, v in LightGlue.features[kind].items() if k != "weights"}
    paths = str(tmp_path / f"{kind}.pt"), str(tmp_path / f"lightglue-{kind}.pth")
    torch.save(extractor.state_dict(), paths[0])
    torch.save(LightGlue(None, **conf).state_dict(), paths[1])
    return paths


@pytest.mark.parametrize("kind", ["disk", "aliked"])
def test_lightglue_loads_checkpoint_files_and_matches(tmp_path, kind, single_torch_thread):
    extractor, lightglue = write_checkpoints(tmp_path, kind)
    options = {"extractor_weights": extractor, "lightglue_weights": lightglue, "min_side": 64, "max_side": 128,
               "max_keypoints": 128}
    matcher = get_matcher(f"lightglue-{kind}", options)
    assert matcher.name == f"lightglue-{kind}" and not matcher.lightglue.training and not matcher.extractor.training
    saved = torch.load(lightglue, weights_only=True)
    loaded = matcher.lightglue.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())  # the file's weights, not fresh ones
    a, b = matcher.extract(tiger_photo(0, 0)), matcher.extract(tiger_photo(0, 1))
    assert len(a) > 0 and a.descriptors.shape[1] == 128
    match = matcher.match(a, b)
    assert isinstance(match, PairMatch) and match.score >= 0 and match.keypoints_a.shape == match.keypoints_b.shape
    assert matcher.match(matcher.extract(np.zeros((32, 32, 3), np.uint8)), a).score == 0.0


def test_lightglue_refuses_a_checkpoint_of_another_network(tmp_path):
    disk, _ = write_checkpoints(tmp_path, "disk")
    with pytest.raises(RuntimeError, match="does not fit ALIKED"):
        get_matcher("lightglue-aliked", {"extractor_weights": disk, "lightglue_weights": disk})


def test_unknown_matcher_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown matcher 'orb'") as raised:
        get_matcher("orb")
    assert all(name in str(raised.value) for name in MATCHERS)
    with pytest.raises(ValueError, match="no local matching"):
        get_matcher("none")
    with pytest.raises(ValueError, match="matching must be one of"):
        check_options("sift", {"matching": "brute"})
