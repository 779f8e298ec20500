import polars as pl
from PIL import Image

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
