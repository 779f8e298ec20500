"""Part masks from keypoints, without Ray: the recipe's rules on hand-computed small cases, the keypoint
sources (ATRW, COCO, a manifest column) and the errors bad input gets."""

import json

import numpy as np
import polars as pl
import pytest

from reid_core.data import manifest as mf
from reid_core.parts.keypoints import (
    KeypointSourceError,
    keypoints_for_rows,
    read_keypoint_file,
)
from reid_core.parts.mapping import MappingError, load_mapping, parse_mapping
from reid_core.parts.render import (
    PartMaskError,
    nearest_part,
    part_label_map,
    trace_tail,
    visible,
    with_midpoints,
)
from reid_core.parts.schemes import LABELS, SCHEMES
from reid_core.pipelines.part_masks import frame

HEAD, BODY, FRONT, HIND, TAIL = (LABELS.index(p) for p in ("head", "body", "front_legs", "hind_legs", "tail"))
ATRW_NAMES = ["left_ear", "right_ear", "nose", "right_shoulder", "right_front_paw", "left_shoulder",
              "left_front_paw", "right_hip", "right_knee", "right_back_paw", "left_hip", "left_knee",
              "left_back_paw", "tail", "center"]  # datasets.md, ATRW's pose files


def _mapping(**data) -> object:
    return parse_mapping(data, "test-mapping.json")


def test_visibility_rule_threshold_finite_and_ignored():
    keypoints = np.array([[1, 1, 0], [1, 1, 0.5], [1, 1, 0.6], [1, 1, 2], [np.nan, 1, 2], [1, 1, 2], [1, 1, np.nan]])
    labels = np.array([HEAD, HEAD, HEAD, BODY, BODY, 0, BODY])  # label 0: a keypoint the mapping ignores
    assert visible(keypoints, labels, 0.5).tolist() == [False, False, True, True, False, False, False]
    assert visible(keypoints, labels, 0.0).tolist() == [False, True, True, True, False, False, False]


def test_midpoints_only_on_connections_with_both_ends_used():
    xy = np.array([[0.0, 0.0], [4.0, 2.0], [10.0, 10.0]])
    used = np.array([True, True, False])
    points, labels = with_midpoints(xy, used, np.array([HEAD, BODY, TAIL]), ((0, 1, BODY), (1, 2, TAIL)))
    assert points.tolist() == [[0, 0], [4, 2], [2, 1]]  # the second connection's far end is not used
    assert labels.tolist() == [HEAD, BODY, BODY]


def test_nearest_keypoint_assignment_ties_to_the_lower_label_and_background_last():
    foreground = np.ones((4, 4), bool)
    foreground[3, 3] = False
    # Pixel (r, c) is centred at (c + .5, r + .5): nearer the head point when r + c < 3, a tie when r + c == 3.
    labels = nearest_part(foreground, np.array([[0.5, 0.5], [3.5, 3.5]]), np.array([HEAD, TAIL]))
    assert labels.tolist() == [[1, 1, 1, 1],
                               [1, 1, 1, 5],
                               [1, 1, 5, 5],
                               [1, 5, 5, 0]]


def test_label_map_scales_keypoints_to_the_grid_and_uses_midpoints():
    mapping = _mapping(parts={"nose": "head", "rump": "body"}, connections=[["nose", "rump", "body"]])
    foreground = np.ones((8, 16), bool)  # a 16 x 8 frame onto an 8 x 8 grid: x halves, y stays
    labels = part_label_map(foreground, [2, 4, 2, 14, 4, 2], mapping, size=8)
    # Points at grid x = 1 (head), 4 (the midpoint, body), 7 (body), all at one height: columns decide;
    # column 2's centre (2.5) is as near 1 as 4: the tie goes to head.
    assert labels.tolist() == [[1, 1, 1, 2, 2, 2, 2, 2]] * 8
    # The rump hidden: no midpoint, the nose's part everywhere.
    assert (part_label_map(foreground, [2, 4, 2, 14, 4, 0], mapping, size=8) == HEAD).all()
    with pytest.raises(PartMaskError, match="no usable keypoint: none of the 2 has visibility > 0.5"):
        part_label_map(foreground, [2, 4, 0, 14, 4, 0.5], mapping, size=8)
    with pytest.raises(PartMaskError, match="no foreground: the mask is empty"):
        part_label_map(np.zeros((8, 16), bool), [2, 4, 2, 14, 4, 2], mapping, size=8)


def test_tail_is_traced_along_a_shortest_path_through_the_mask():
    corridor = np.zeros((5, 10), bool)
    corridor[0] = True  # a 10-pixel path: points at path indices 3 and 6 of 0..9
    assert trace_tail(corridor, np.array([0.5, 0.5]), np.array([9.5, 0.5])).tolist() == [[3.5, 0.5], [6.5, 0.5]]
    # An L: along the top row, then down the right column (one diagonal step at the corner: 18 pixels);
    # indices 5 and 11 of 0..17. Ends outside the mask move to its nearest pixel first.
    bent = np.zeros((10, 10), bool)
    bent[0, :] = bent[:, 9] = True
    points = trace_tail(bent, np.array([0.5, 4.0]), np.array([5.0, 9.5]))
    assert points.tolist() == [[5.5, 0.5], [9.5, 3.5]]  # on the mask, not on the straight line between the ends
    apart = np.zeros((6, 6), bool)
    apart[0, 0] = apart[5, 5] = True
    assert trace_tail(apart, np.array([0.5, 0.5]), np.array([5.5, 5.5])).shape == (0, 2)  # not connected

    mapping = _mapping(parts={"base": "body", "tip": "tail"}, tail=["base", "tip"])
    bent_tail = part_label_map(bent, [0.5, 0.5, 2, 9.5, 9.5, 2], mapping, size=10)
    # Without the traced points (at (5.5, .5) and (9.5, 3.5)) pixel (0, 6) would be the base's (body).
    assert bent_tail[0, 6] == TAIL and bent_tail[0, 2] == BODY and bent_tail[9, 9] == TAIL


def test_frame_follows_the_segmentation_crop():
    mask = np.zeros((40, 60), bool)
    mask[10:20, 20:40] = True  # a 20 x 10 box; margin 0.5 of 20 = 10 on every side, square: 40 x 40
    keypoints = [25.0, 15.0, 2.0]
    crop = json.dumps({"method": "reference", "masking": {"fill": [255, 255, 255], "crop": True,
                                                          "crop_margin": 0.5, "square": True}})
    cropped, moved = frame(mask, keypoints, {"seg_config": crop, "seg_status": "ok"})
    assert cropped.shape == (35, 40) and moved.tolist() == [15.0, 15.0, 2.0]  # box (10, 0, 50, 35)
    for row in ({"seg_config": crop, "seg_status": "flagged"}, {"seg_config": None, "seg_status": None}):
        whole, same = frame(mask, keypoints, row)  # flagged images are kept whole; no config: no crop
        assert whole.shape == (40, 60) and same.tolist() == keypoints
    with pytest.raises(ValueError, match="seg_config is not a JSON object"):
        frame(mask, keypoints, {"seg_config": "{oops", "seg_status": "ok"})


def test_shipped_atrw_mapping_has_atrw_order_and_every_scheme_part():
    mapping = load_mapping("atrw")
    assert list(mapping.names) == ATRW_NAMES and mapping.values_per_row == 45 and mapping.tail is None
    for scheme in SCHEMES.values():
        mapping.check_covers(scheme)
    assert mapping.labels[ATRW_NAMES.index("nose")] == HEAD and mapping.labels[ATRW_NAMES.index("tail")] == TAIL
    no_tail = _mapping(parts={"nose": "head", "center": "body", "paw": "front_legs", "hock": "hind_legs"})
    no_tail.check_covers(SCHEMES["yak"])  # the yak's tail is part of its body
    with pytest.raises(MappingError, match=r"labels no keypoint as tail, which the tiger part scheme \(K=5\)"):
        no_tail.check_covers(SCHEMES["tiger"])


@pytest.mark.parametrize("data, problem", [
    ({"parts": {"nose": "snout"}}, "keypoint 'nose' maps to 'snout', which is not a part. Fix: use one of head"),
    ({"parts": {"nose": "head"}, "connections": [["nose", "ear"]]}, r"names \['ear'\], not in \"parts\""),
    ({"parts": {"nose": "head", "hip": "hind_legs"}, "connections": [["nose", "hip"]]},
     r"joins head and hind_legs keypoints. Fix: name its midpoint's part as a third entry, e.g. \['nose', 'hip', 'body'\]"),
    ({"parts": {"nose": "head"}, "tails": ["nose"]}, r"unknown keys \['tails'\]"),
    ({"parts": {"nose": "head"}, "order": ["nose", "nose"]}, "must name every keypoint of \"parts\" once"),
])
def test_bad_mapping_files_say_what_and_how_to_fix(tmp_path, data, problem):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    with pytest.raises(MappingError, match=f"mapping {path}: .*{problem}"):
        load_mapping(str(path))
    with pytest.raises(MappingError, match="mapping nope does not exist. Fix: .* shipped mapping: atrw"):
        load_mapping("nope")


def _coco(names: list[str], images: list[dict], annotations: list[dict]) -> dict:
    return {"info": {}, "licenses": [], "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "tiger", "keypoints": names, "skeleton": [[0, 1]]}]}


def test_atrw_and_coco_files_become_flat_lists_in_the_mapping_order(tmp_path):
    mapping = load_mapping("atrw")
    atrw = tmp_path / "reid_keypoints_train.json"
    atrw.write_text(json.dumps({"000384.jpg": list(range(45))}))
    assert read_keypoint_file(str(atrw), mapping) == {"000384.jpg": [float(v) for v in range(45)]}

    # A pose estimator's COCO file: its own keypoint order, a subset of the names, two detections of one
    # image (the one with more visible keypoints wins), ATRW's pose files' `filename` key.
    names = ["center", "nose", "tail"]
    coco = tmp_path / "pose.json"
    coco.write_text(json.dumps(_coco(names, [{"id": 7, "filename": "crops/000384.jpg", "width": 9, "height": 9}], [
        {"id": 1, "image_id": 7, "category_id": 1, "keypoints": [5, 5, 0.9, 0, 0, 0, 0, 0, 0]},
        {"id": 2, "image_id": 7, "category_id": 1, "keypoints": [6, 6, 0.9, 1, 2, 0.8, 3, 4, 0.2]}])))
    flat = read_keypoint_file(str(coco), mapping)["000384.jpg"]
    assert len(flat) == 45 and flat[3 * 14:3 * 15] == [6, 6, 0.9] and flat[3 * 2:3 * 3] == [1, 2, 0.8]
    assert flat[3 * 13:3 * 14] == [3, 4, 0.2] and sum(flat[:6]) == 0  # absent keypoints: (0, 0, 0)


def test_bad_keypoint_files_say_what_and_how_to_fix(tmp_path):
    mapping = load_mapping("atrw")
    coco = tmp_path / "superanimal.json"
    coco.write_text(json.dumps(_coco(["nose", "withers"], [{"id": 1, "file_name": "a.jpg"}], [])))
    with pytest.raises(MappingError, match=rf"{coco} category 'tiger' names keypoints \['withers'\] that mapping "
                                           r".*atrw.json does not know. Fix: add them .*--mapping"):
        read_keypoint_file(str(coco), mapping)
    other = tmp_path / "boxes.json"
    other.write_text(json.dumps({"images": [], "boxes": []}))
    with pytest.raises(KeypointSourceError, match=rf"{other} is an object with keys \['boxes', 'images'\]: neither "
                                                  "ATRW's keypoints .* nor a COCO keypoint file"):
        read_keypoint_file(str(other), mapping)
    short = tmp_path / "reid_keypoints_test.json"
    short.write_text(json.dumps({"000001.jpg": [1, 2, 2] * 14}))
    with pytest.raises(KeypointSourceError, match="entry '000001.jpg' has 42 numbers, mapping .* orders 15 keypoints"):
        read_keypoint_file(str(short), mapping)
    with pytest.raises(KeypointSourceError, match="does not exist. Fix: .* manifest column"):
        read_keypoint_file(str(tmp_path / "missing.json"), mapping)


def test_rows_are_matched_by_file_name_or_read_from_a_column(tmp_path):
    mapping = load_mapping("atrw")
    atrw = tmp_path / "reid_keypoints_train.json"
    atrw.write_text(json.dumps({"000001.jpg": [1.0] * 45, "000002.jpg": [2.0] * 45}))
    df = pl.DataFrame({"image_uri": ["/d/train/000001.jpg", "s3://b/x/000002.jpg", "/d/a/000003.jpg",
                                     "/d/b/000003.jpg"],
                       "keypoints": [[0.5] * 45, None, [1.0] * 44, [1.0] * 45]})
    matched = keypoints_for_rows(df, [str(atrw)], mapping)
    assert matched["_keypoints"].to_list()[:2] == [[1.0] * 45, [2.0] * 45]
    errors = matched["_keypoints_error"].to_list()
    assert errors[:2] == [None, None] and "'000003.jpg' is shared by 2 rows" in errors[2] == errors[3]

    from_column = keypoints_for_rows(df, ["keypoints"], mapping)
    assert from_column["_keypoints"].to_list() == [[0.5] * 45, None, None, [1.0] * 45]
    assert from_column["_keypoints_error"].to_list()[1:3] == [
        "no keypoints: column 'keypoints' is empty for this row",
        "column 'keypoints' has 44 values, mapping atrw expects 45 (15 keypoints x (x, y, v))"]
    only_some = keypoints_for_rows(df.head(3), [str(atrw)], mapping)["_keypoints_error"][2]
    assert only_some == f"no keypoints for '000003.jpg' in {atrw} (matched by the image's file name)"


def test_the_validator_knows_part_statuses():
    df = mf.conform(pl.DataFrame({"image_id": ["a", "b"], "image_uri": ["/a.jpg", "/b.jpg"], "species": "tiger",
                                  "individual": "1", "entity": "1", "side": "left", "split": "train",
                                  "parts_status": ["ok", "done"]}))
    problems = mf.validate(df)
    assert [p.column for p in problems] == ["parts_status"] and "use one of ok, failed" in problems[0].fix
