import json

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from reid_core.data import manifest
from reid_core.data.dataset import ManifestDataset, select_images


def _rows(tmp_path, n=3):
    uris = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 6), (i * 40, 0, 0)).save(path)
        uris.append(str(path))
    return manifest.conform(pl.DataFrame({
        "image_id": [str(i) for i in range(n)], "image_uri": uris, "species": ["tiger"] * n,
        "individual": ["b", "a", "b"][:n], "entity": ["b", "a", "b"][:n], "side": ["left", "right", "unknown"][:n],
        "split": ["train"] * n,
    }))


def test_items_carry_entity_labels_and_side_codes(tmp_path):
    dataset = ManifestDataset(_rows(tmp_path))
    assert dataset.label_names == ["a", "b"]
    assert [int(dataset[i]["label"]) for i in range(3)] == [1, 0, 1]
    assert [int(dataset[i]["side"]) for i in range(3)] == [0, 1, -1]
    assert dataset[2]["image"].getpixel((0, 0)) == (80, 0, 0)


def test_cache_keeps_decoded_images_across_epochs(tmp_path):
    rows = _rows(tmp_path)
    dataset = ManifestDataset(rows, cache=True)
    first = dataset[1]["image"]
    (tmp_path / "1.png").unlink()  # a second read would fail without the cache
    assert dataset[1]["image"] is first


def test_masked_images_are_never_mixed_with_originals(tmp_path):
    rows = _rows(tmp_path)
    plain = select_images(rows)  # no masks at all: the originals
    assert (plain.column, plain.left_out, plain.rows.height) == ("image_uri", 0, 3)
    partly = rows.with_columns(pl.Series("masked_uri", ["m0", None, "m2"]))
    chosen = select_images(partly)
    # One failed segmentation leaves that row out (counted) instead of bringing every background back.
    assert chosen.column == "masked_uri" and chosen.left_out == 1
    assert chosen.rows["masked_uri"].to_list() == ["m0", "m2"]
    unmasked = select_images(partly, use_masked=False)
    assert (unmasked.column, unmasked.left_out, unmasked.rows.height) == ("image_uri", 0, 3)
    none = rows.with_columns(pl.Series("masked_uri", [None, None, None], dtype=pl.String))
    assert select_images(none).column == "image_uri"


PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def _part_rows(tmp_path):
    """One image whose colour encodes its part labels (palette), the label map at half its resolution."""
    labels = np.zeros((32, 32), dtype=np.uint8)
    labels[4:14, 6:26] = 1
    labels[14:28, 6:14] = 2
    labels[18:28, 18:30] = 3  # no symmetry: a flip or rotation shows
    Image.fromarray(labels, "L").save(tmp_path / "parts.png")
    Image.fromarray(PALETTE[labels.repeat(2, 0).repeat(2, 1)], "RGB").save(tmp_path / "image.png")
    rows = _rows(tmp_path, 1).with_columns(pl.lit(str(tmp_path / "image.png")).alias("image_uri"),
                                           pl.lit(str(tmp_path / "parts.png")).alias("parts_uri"))
    return rows, labels


def _labels_from_colours(image: torch.Tensor) -> torch.Tensor:
    distances = ((image.permute(1, 2, 0)[..., None, :] * 255 - torch.tensor(PALETTE).float()) ** 2).sum(-1)
    return distances.argmin(-1)


def test_label_maps_are_transformed_jointly_with_their_image(tmp_path):
    rows, _ = _part_rows(tmp_path)
    joint = v2.Compose([v2.ToImage(), v2.RandomRotation(45, interpolation=v2.InterpolationMode.BILINEAR),
                        v2.RandomHorizontalFlip(0.5), v2.Resize((48, 48), antialias=True),
                        v2.ToDtype(torch.float32, scale=True)])
    dataset = ManifestDataset(rows, joint, masks={"parts": "parts_uri"})
    torch.manual_seed(0)
    for _ in range(8):  # drawn apart, flip and angle would disagree in about half of these
        item = dataset[0]
        parts, image = item["parts"], item["image"]
        assert parts.dtype == torch.int64 and parts.shape == (48, 48) and type(parts) is torch.Tensor
        assert set(parts.unique().tolist()) <= {0, 1, 2, 3}  # nearest: no blended labels, no 0..1 scaling
        assert image.dtype == torch.float32 and image.shape == (3, 48, 48)
        animal = parts > 0
        agreement = (_labels_from_colours(image) == parts)[animal].float().mean().item()
        assert agreement > 0.9, agreement  # only boundary pixels differ (bilinear image, nearest labels)


def test_a_label_map_that_is_not_one_is_an_error_naming_the_file(tmp_path):
    rows, _ = _part_rows(tmp_path)
    Image.new("RGB", (32, 32)).save(tmp_path / "parts.png")
    with pytest.raises(ValueError, match=r"parts\.png is a RGB image, not a label map"):
        ManifestDataset(rows, masks={"parts": "parts_uri"})[0]


def test_training_rows_without_a_label_map_are_left_out_and_counted(tmp_path):
    from reid_core.engine.loop import training_images
    from reid_core.methods.contract import Method

    class PartsMethod(Method):
        name = "parts-test"
        mask_columns = {"parts": "parts_uri"}

    rows = _rows(tmp_path).with_columns(pl.Series("parts_uri", ["p0", None, "p2"]))
    images = training_images(PartsMethod(), None, rows, use_masked=True)
    assert images.left_out == 1 and images.rows["parts_uri"].to_list() == ["p0", "p2"]


def test_part_maps_must_be_on_the_frame_of_the_images_read(tmp_path):
    """Maps that came with the photos do not fit cropped masked images, and maps part_masks.py made on
    the cropped frame do not fit the original photos; without a crop both fit both."""
    from reid_core.engine.loop import training_images
    from reid_core.methods.contract import Method

    class PartsMethod(Method):
        name = "parts-test"
        mask_columns = {"parts": "parts_uri"}

    def seg(crop: bool) -> str:
        return json.dumps({"method": "reference", "masking": {"crop": crop}})

    rows = _rows(tmp_path).with_columns(pl.lit("p").alias("parts_uri"), pl.col("image_uri").alias("masked_uri"),
                                        pl.lit("ok").alias("seg_status"), pl.lit(seg(True)).alias("seg_config"))
    with pytest.raises(ValueError, match=r"3 rows of m.parquet \(e\.g\. '0'\) have parts_uri maps on the original "
                                         r"photo's frame.*workflows/part_masks\.py.*--no-crop"):
        training_images(PartsMethod(), None, rows, use_masked=True, source="m.parquet")
    assert training_images(PartsMethod(), None, rows, use_masked=False).column == "image_uri"
    assert training_images(PartsMethod(), None, rows.with_columns(pl.lit(seg(False)).alias("seg_config")),
                           use_masked=True).rows.height == 3
    # one row kept whole (flagged) fits either way
    one_flagged = rows.with_columns(pl.Series("seg_status", ["flagged", "ok", "ok"]))
    with pytest.raises(ValueError, match=r"^2 rows .*'1'"):
        training_images(PartsMethod(), None, one_flagged, use_masked=True)

    made = rows.with_columns(pl.lit("{}").alias("parts_config"))  # made by part_masks.py on the cropped frame
    assert training_images(PartsMethod(), None, made, use_masked=True).column == "masked_uri"
    with pytest.raises(ValueError, match=r"made on the cropped frame.*drop --original-images"):
        training_images(PartsMethod(), None, made, use_masked=False)


def test_flipped_copies_are_mirrored_on_read_with_their_label_maps(tmp_path):
    from reid_core.data.views import with_flipped_copies

    rows, labels = _part_rows(tmp_path)
    view = with_flipped_copies(rows)
    dataset = ManifestDataset(view, masks={"parts": "parts_uri"})
    assert dataset.label_names == ["b", "b~flipped"]  # a new identity
    original, flipped = dataset[0], dataset[1]
    assert np.array_equal(np.asarray(flipped["image"]), np.asarray(original["image"])[:, ::-1])
    assert torch.equal(flipped["parts"], original["parts"].flip(-1))
    assert int(original["side"]) == 0 and int(flipped["side"]) == 1  # left -> right
    with pytest.raises(ValueError, match="already"):
        with_flipped_copies(view)


def test_evaluations_warn_how_many_rows_have_no_masked_image(tmp_path):
    from reid_core.data.dataset import images_to_evaluate

    rows = _rows(tmp_path).with_columns(pl.Series("masked_uri", ["m0", None, "m2"]))
    with pytest.warns(UserWarning, match=r"1 'test' rows have no masked image"):
        images = images_to_evaluate(rows, use_masked=True, split="test")
    assert images.rows.height == 2
