import numpy as np
import pytest

from reid_core.data import synthetic
from reid_core.parts.schemes import LABELS, PartScheme, scheme_for


def test_the_vocabulary_is_the_synthetic_species_labels():
    assert LABELS == synthetic.PART_NAMES


def test_coarser_groupings_merge_labels_at_load_time():
    labels = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)
    tiger = scheme_for("tiger")
    assert tiger.merge(labels, 5).tolist() == labels.tolist()
    assert tiger.merge(labels, 4).tolist() == [[0, 1, 2], [3, 4, 2]]  # tail -> body
    assert tiger.merge(labels, 3).tolist() == [[0, 1, 2], [3, 3, 2]]  # legs together
    assert scheme_for("yak").choices == (3, 4) and scheme_for("yak").default_k == 4
    assert tiger.group_names(3) == ("head", "body+tail", "front_legs+hind_legs")


def test_unknown_k_and_species_name_the_fix():
    with pytest.raises(ValueError, match=r"K=5: use one of 3, 4 .*parts.num_parts=4"):
        scheme_for("yak").grouping(5)
    with pytest.raises(ValueError, match="no part scheme for species 'zebra'.*tiger, yak, elephant"):
        scheme_for("zebra")


def test_a_grouping_must_cover_every_part_once():
    with pytest.raises(ValueError, match="cover"):
        PartScheme("bad", {2: (("head",), ("body",))}, default_k=2)
