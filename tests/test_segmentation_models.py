"""Background-removal models: fusion criteria, SAM and ISNet loading (local and s3://), the fused
segmenter, and mask quality. Models are tiny, written by the tests in the real file formats."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from reid_core.data import files as io
from reid_core.segmentation import fusion, quality
from reid_core.segmentation.masking import mask_to_png
from reid_core.segmentation.registry import build_segmenter, names
from reid_core.segmentation.resize import limited_size

# ---------------------------------------------------------------- hand-made masks


def box(shape, top, left, bottom, right):
    mask = np.zeros(shape, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


SHAPE = (10, 10)
ANIMAL = box(SHAPE, 2, 2, 8, 8)  # 36 px foreground


def test_largest_iou_inverts_a_background_mask():
    # SAM's largest proposal is the background around the animal: IoU with the foreground is 0 < 0.3.
    background = ~ANIMAL
    small = box(SHAPE, 0, 0, 1, 1)
    fused = fusion.fuse("largest_iou", [small, background], ANIMAL)
    assert fused.accepted == (1,) and fused.inverted
    np.testing.assert_array_equal(fused.mask, ANIMAL)


def test_largest_iou_keeps_a_matching_mask_and_skips_inversion_for_tiny_foregrounds():
    close = box(SHAPE, 2, 2, 8, 7)  # IoU 30/36
    fused = fusion.fuse("largest_iou", [close], ANIMAL)
    assert not fused.inverted
    np.testing.assert_array_equal(fused.mask, close)
    # Foreground ratio 0.04 <= 0.1: AER keeps the largest mask even though its IoU is 0.
    speck = box(SHAPE, 0, 0, 2, 2)
    kept = fusion.fuse("largest_iou", [~speck], speck)
    assert not kept.inverted
    np.testing.assert_array_equal(kept.mask, ~speck)


def test_coverage_unions_masks_mostly_on_the_foreground():
    head = box(SHAPE, 2, 2, 4, 8)  # fully inside: coverage 1
    half = box(SHAPE, 6, 6, 10, 10)  # 4 of 16 px inside: 0.25
    body = box(SHAPE, 4, 2, 9, 8)  # 24 of 30 px inside: 0.8
    fused = fusion.fuse("coverage", [head, half, body], ANIMAL)
    assert fused.accepted == (0, 2)
    np.testing.assert_array_equal(fused.mask, head | body)
    # Strictly greater, as AER's code: a mask with exactly half its area inside does not pass.
    exactly_half = box(SHAPE, 2, 6, 8, 10)  # 12 px in, 12 out
    assert fusion.coverage(exactly_half, ANIMAL) == 0.5
    assert fusion.fuse("coverage", [exactly_half], ANIMAL, theta=0.5).mask is None


def test_iou_union_uses_iou_at_or_above_theta():
    close = box(SHAPE, 2, 2, 8, 7)  # IoU 30/36
    far = box(SHAPE, 0, 0, 3, 3)  # IoU 1/44
    fused = fusion.fuse("iou_union", [close, far], ANIMAL, theta=30 / 36)
    assert fused.accepted == (0,)
    np.testing.assert_array_equal(fused.mask, close)


@pytest.mark.parametrize("policy, status, mask_kind", [
    ("fallback", "fallback", "foreground"), ("keep", "fallback", "whole"), ("flag", "flagged", "whole"),
])
def test_no_pass_policies(policy, status, mask_kind):
    outside = box(SHAPE, 0, 0, 2, 10)  # nothing on the foreground: coverage 0
    fused = fusion.fuse("coverage", [outside], ANIMAL)
    assert fused.mask is None and "no SAM mask" in fused.reason
    mask, got_status, message = fusion.resolve(fused, ANIMAL, policy, SHAPE)
    assert got_status == status and message.startswith("no SAM mask")
    np.testing.assert_array_equal(mask, ANIMAL if mask_kind == "foreground" else np.ones(SHAPE, bool))


def test_no_proposals_and_empty_foreground_never_raise():
    # AER's code raised IndexError when SAM proposed nothing.
    fused = fusion.fuse("largest_iou", [], ANIMAL)
    assert fused.mask is None and fused.reason == "SAM proposed no mask"
    empty = np.zeros(SHAPE, bool)
    mask, status, message = fusion.resolve(fusion.fuse("foreground_only", None, empty), empty, "fallback", SHAPE)
    assert status == "flagged" and mask.all() and "no foreground mask to fall back on" in message
    ok = fusion.resolve(fusion.fuse("sam_only", [ANIMAL], None), None, "flag", SHAPE)
    assert ok[1] == "ok" and ok[2] is None


def test_aer_size_limit():
    assert limited_size(1000, 2000) == (1000, 2000)
    assert limited_size(3000, 2000) == (1500, 1000)  # height capped first
    assert limited_size(2000, 6000) == (750, 2250)  # 1500 x 4500 after the height, then the width
    assert limited_size(1000, 4500) == (500, 2250)


# ---------------------------------------------------------------- tiny models in the real formats


def write_tiny_sam(path, seed=123):
    """A 0.2 M-parameter SAM of segment-anything's parts, saved as the official files are: a state dict."""
    from reid_core.segmentation.sam import build_tiny_sam

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_tiny_sam()
    torch.save(sam.state_dict(), path)
    return sam.state_dict()


def write_brightness_isnet(path, size=1024):
    """An ONNX model with ISNet's interface (N x 3 x 1024 x 1024 in, side outputs N x 1 x 1024 x 1024 out)
    whose first output is the image's brightness, so the foreground it finds is predictable."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    image = helper.make_tensor_value_info("input_image", TensorProto.FLOAT, [1, 3, size, size])
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, size, size]) for name in ("d0", "d1")]
    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), 1 / 3, np.float32), "w")
    nodes = [helper.make_node("Conv", ["input_image", "w"], ["gray"]), helper.make_node("Sigmoid", ["gray"], ["d0"]),
             helper.make_node("Identity", ["d0"], ["d1"])]
    model = helper.make_model(helper.make_graph(nodes, "tiny_isnet", [image], outputs, initializer=[weight]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def bright_square(height=48, width=80):
    image = np.full((height, width, 3), 20, np.uint8)
    image[10:30, 20:50] = 230
    return image, box((height, width), 10, 20, 30, 50)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    state = write_tiny_sam(folder / "sam_tiny.pth")
    write_brightness_isnet(folder / "isnet.onnx")
    return {"sam": str(folder / "sam_tiny.pth"), "isnet": str(folder / "isnet.onnx"), "state": state}


def test_sam_loads_a_state_dict_from_a_local_file(model_files):
    from reid_core.segmentation.sam import load_sam

    sam = load_sam("tiny", model_files["sam"], device="cpu")
    assert not sam.training
    for key, value in sam.state_dict().items():
        torch.testing.assert_close(value, model_files["state"][key], msg=key)


def test_sam_loads_from_s3_through_the_cache(model_files, s3_bucket, tmp_path):
    from reid_core.segmentation.sam import load_sam

    uri = f"{s3_bucket}/weights/sam_tiny.pth"
    with open(model_files["sam"], "rb") as handle:
        io.write_bytes(uri, handle.read())
    sam = load_sam("tiny", uri, device="cpu", cache_dir=tmp_path / "cache")
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.endswith("-sam_tiny.pth")
    first_inode = cached[0].stat().st_ino  # a new download would rename a new file into place
    torch.testing.assert_close(sam.mask_decoder.iou_prediction_head.layers[0].weight,
                               model_files["state"]["mask_decoder.iou_prediction_head.layers.0.weight"])
    load_sam("tiny", uri, device="cpu", cache_dir=tmp_path / "cache")  # unchanged remote: no second download
    assert cached[0].stat().st_ino == first_inode
    io.write_bytes(uri, b"changed")  # a replaced remote file is fetched again (and then rejected)
    with pytest.raises(ValueError, match="cannot be read as a torch state dict"):
        load_sam("tiny", uri, device="cpu", cache_dir=tmp_path / "cache")


def test_sam_errors_name_the_file_and_the_fix(model_files, tmp_path):
    from reid_core.segmentation.sam import load_sam

    with pytest.raises(ValueError, match=r"sam_tiny.pth is not a SAM vit_b state dict.*sam_vit_b_01ec64.pth"):
        load_sam("vit_b", model_files["sam"], device="cpu")
    vit_l_like = tmp_path / "vit_l_like.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1024, 3, 16, 16)}, vit_l_like)
    with pytest.raises(ValueError, match="looks like a vit_l checkpoint: pass model_type=vit_l"):
        load_sam("vit_b", vit_l_like, device="cpu")
    html = tmp_path / "sam_vit_h_4b8939.pth"
    html.write_text("<html>403 Forbidden</html>")
    with pytest.raises(ValueError, match="cannot be read as a torch state dict.*dl.fbaipublicfiles.com"):
        load_sam("vit_h", html, device="cpu")
    with pytest.raises(FileNotFoundError, match=r"missing.pth not found: download .*sam_vit_h_4b8939.pth"):
        load_sam("vit_h", tmp_path / "missing.pth", device="cpu")
    with pytest.raises(ValueError, match="SAM vit_h needs a checkpoint"):
        load_sam("vit_h", None, device="cpu")


def test_sam_automatic_and_prompted_modes(model_files):
    from reid_core.segmentation.sam import SamProposer, load_sam

    # Random weights pass no quality filter at SAM's defaults: thresholds lowered to get proposals.
    proposer = SamProposer(load_sam("tiny", model_files["sam"], device="cpu"), points_per_side="4",
                           pred_iou_thresh=-1.0, stability_score_thresh=0.0)
    assert proposer.options["points_per_side"] == 4  # --set strings coerced to the default's type
    image, _ = bright_square()
    masks = proposer.automatic(image)
    assert len(masks) >= 1 and all(m.shape == (48, 80) and m.dtype == bool for m in masks)
    prompted = proposer.prompted(image)
    assert prompted.shape == (48, 80) and prompted.dtype == bool
    with pytest.raises(ValueError, match="unknown SAM generator option.*points_per_sid"):
        SamProposer(proposer.sam, points_per_sid=4)


def test_isnet_replicates_rembg_pre_and_post_processing():
    from reid_core.segmentation.foreground import post_process_mask, rembg_input, rembg_mask

    flat = rembg_input(np.full((5, 7, 3), 200, np.uint8), (0.485, 0.456, 0.406), 16)
    assert flat.shape == (1, 3, 16, 16) and flat.dtype == np.float32
    # Divided by the image's own maximum (200), not 255, then the mean subtracted (std 1).
    np.testing.assert_allclose(flat[0, :, 0, 0], [0.515, 0.544, 0.594], atol=1e-6)
    prediction = np.zeros((1, 1, 4, 4), np.float32)
    prediction[0, 0, :2] = 3.0
    out = rembg_mask(prediction, 4, 4)
    assert out.dtype == np.uint8 and out[0, 0] == 255 and out[3, 3] == 0
    speck = np.zeros((20, 20), np.uint8)
    speck[3, 3] = 255  # removed by the 3x3 opening
    speck[8:18, 8:18] = 255  # kept, corners rounded by the blur
    cleaned = post_process_mask(speck)
    assert set(np.unique(cleaned)) == {0, 255} and cleaned[3, 3] == 0 and cleaned[13, 13] == 255


def test_isnet_loads_local_and_s3_onnx_and_finds_the_bright_animal(model_files, s3_bucket, tmp_path):
    from reid_core.segmentation.foreground import ISNetForeground

    image, animal = bright_square()
    local = ISNetForeground(model_files["isnet"], device="cpu")
    mask = local.predict(image)
    assert mask.shape == animal.shape and quality.mask_iou(mask, animal) > 0.95
    uri = f"{s3_bucket}/weights/isnet-general-use.onnx"
    with open(model_files["isnet"], "rb") as handle:
        io.write_bytes(uri, handle.read())
    remote = ISNetForeground(uri, device="cpu", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(remote.predict(image), mask)
    not_onnx = tmp_path / "isnet-general-use.onnx"
    not_onnx.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"isnet-general-use.onnx is not an ONNX model.*releases/download"):
        ISNetForeground(not_onnx, device="cpu")


# ---------------------------------------------------------------- the fused segmenter


def options(model_files, **extra):
    return {"sam_checkpoint": model_files["sam"], "model_type": "tiny", "isnet_model": model_files["isnet"],
            "device": "cpu", "points_per_side": 4, "pred_iou_thresh": -1.0, "stability_score_thresh": 0.0,
            **extra}


def test_registered_names():
    assert {"sam+isnet", "sam", "isnet", "reference"} <= set(names())


def test_sam_isnet_segments_a_downscaled_image_back_to_full_size(model_files):
    segmenter = build_segmenter("sam+isnet", options(model_files, max_width="40", theta="0.3"))
    image, _ = bright_square()
    result = segmenter.segment(image, {"species": "tiger", "split": "train"})
    assert result.method == "sam+isnet" and result.status in {"ok", "fallback"}
    assert result.mask.shape == (48, 80) and result.mask.dtype == bool
    assert result.details["criterion"] == "largest_iou" and result.details["theta"] == 0.3
    assert result.details["scale"] == 0.5 and result.details["proposals"] >= 1


def test_yak_preset_prompts_sam_for_training_and_uses_the_foreground_for_test(model_files):
    segmenter = build_segmenter("sam+isnet", options(model_files, preset="species"))
    image, animal = bright_square()
    test = segmenter.segment(image, {"species": "yak", "split": "test"})
    assert test.status == "ok" and test.details["criterion"] == "foreground_only"
    assert quality.mask_iou(test.mask, animal) > 0.95
    train = segmenter.segment(image, {"species": "yak", "split": "train"})
    assert train.details["criterion"] == "sam_only" and train.details["sam_mode"] == "prompted"
    assert train.details["proposals"] == 1 and train.mask.shape == (48, 80)
    elephant = segmenter.segment(image, {"species": "elephant", "split": "test"})
    assert elephant.details["criterion"] == "coverage" and elephant.details["theta"] == 0.5


def test_isnet_only_flags_an_image_without_foreground(model_files):
    segmenter = build_segmenter("isnet", {"isnet_model": model_files["isnet"], "device": "cpu"})
    black = np.zeros((32, 32, 3), np.uint8)
    result = segmenter.segment(black)
    assert result.status == "flagged" and result.mask.all() and "foreground mask is empty" in result.error


def test_empty_sam_mask_falls_back_to_the_foreground(model_files):
    segmenter = build_segmenter("sam", options(model_files, sam_mode="prompted", policy="fallback"))
    segmenter.sam.prompted = lambda image: np.zeros(image.shape[:2], bool)
    image, animal = bright_square()
    result = segmenter.segment(image)
    assert result.status == "fallback" and result.error == "the SAM mask is empty: used the foreground mask"
    assert quality.mask_iou(result.mask, animal) > 0.95


def test_segmenter_fails_rows_not_jobs(model_files):
    segmenter = build_segmenter("sam+isnet", options(model_files))
    bad = segmenter.segment(np.zeros((8, 8), np.uint8))
    assert bad.status == "failed" and bad.mask is None and "RGB uint8" in bad.error

    def out_of_memory(image):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    segmenter.sam.automatic = out_of_memory
    failed = segmenter.segment(bright_square()[0])
    assert failed.status == "failed" and failed.error == "sam: OutOfMemoryError: CUDA out of memory"


def test_build_errors_say_what_to_pass(model_files):
    with pytest.raises(ValueError, match="needs a foreground model: pass isnet_model"):
        build_segmenter("sam+isnet", {"sam_checkpoint": model_files["sam"], "model_type": "tiny", "device": "cpu"})
    with pytest.raises(ValueError, match="pass either preset or criterion"):
        build_segmenter("sam+isnet", options(model_files, preset="tiger", criterion="coverage"))
    with pytest.raises(ValueError, match="unknown no-pass policy 'drop'"):
        build_segmenter("sam+isnet", options(model_files, policy="drop"))


# ---------------------------------------------------------------- quality


def test_quality_per_method_and_criterion(tmp_path):
    reference = box((4, 4), 0, 0, 2, 2)  # 4 px
    half = box((4, 4), 0, 0, 1, 2)  # IoU 0.5
    table = quality.summarize_masks([
        ("sam+isnet", "largest_iou", reference, reference),
        ("sam+isnet", "largest_iou", half, reference),
        ("sam+isnet", "largest_iou", None, reference),  # failed row
        ("isnet", "foreground_only", box((4, 4), 0, 0, 4, 4), reference),  # IoU 0.25
    ])
    assert table.to_dicts() == [
        {"method": "isnet", "criterion": "foreground_only", "n": 1, "n_missing": 0, "mean_iou": 0.25,
         "median_iou": 0.25, "frac_iou_ge_0_5": 0.0},
        {"method": "sam+isnet", "criterion": "largest_iou", "n": 2, "n_missing": 1, "mean_iou": 0.75,
         "median_iou": 0.75, "frac_iou_ge_0_5": 1.0},
    ]
    # From a manifest's PNG masks.
    for name, mask in {"ref": reference, "pred": half}.items():
        io.write_image(str(tmp_path / f"{name}.png"), mask_to_png(mask))
    manifest = pl.DataFrame({"image_id": ["a", "b"], "mask_uri": [str(tmp_path / "pred.png"), None],
                             "ref_mask_uri": [str(tmp_path / "ref.png")] * 2, "seg_method": ["sam", "sam"]})
    scored = quality.score_manifest(manifest)
    assert scored["mask_iou"].to_list() == [0.5, None]
    summary = quality.summarize(scored).row(0, named=True)
    assert (summary["method"], summary["criterion"], summary["n"], summary["n_missing"]) == ("sam", None, 1, 1)


def test_options_are_typed_and_errors_name_the_bad_option_and_the_valid_ones():
    from reid_core.segmentation.registry import option_names, parse_options

    typed = parse_options("sam+isnet", {"max_width": "none", "theta": "0.3", "isnet_post_process": "false",
                                        "points_per_side": "4"})
    assert (typed.max_width, typed.theta, typed.isnet_post_process) == (None, 0.3, False)
    assert typed.generator() == {"points_per_side": 4}  # unset SAM parameters keep SAM's defaults
    assert parse_options("sam", {}).policy == "flag" and parse_options("sam+isnet", {}).policy == "fallback"
    with pytest.raises(ValueError, match=r"'sam\+isnet' takes no option points_per_sid; it takes: sam_checkpoint, "):
        parse_options("sam+isnet", {"points_per_sid": 4})
    with pytest.raises(ValueError, match=r"option sam_mode='auto': Input should be 'automatic', 'prompted' or 'box'"):
        parse_options("sam", {"sam_mode": "auto"})
    with pytest.raises(ValueError, match="unknown segmentation method 'sam2'; choose one of isnet, reference"):
        parse_options("sam2", {})
    assert option_names("reference") == ["column"]
