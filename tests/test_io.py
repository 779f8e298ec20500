import boto3
import numpy as np
import polars as pl
import pytest
from PIL import Image

from reid_core.data import files as rio
from reid_core.data import manifest


def _tiny_manifest(uri_prefix: str) -> pl.DataFrame:
    return manifest.conform(
        pl.DataFrame(
            {
                "image_id": ["a", "b"],
                "image_uri": [f"{uri_prefix}/a.png", f"{uri_prefix}/b.png"],
                "species": ["tiger", "tiger"],
                "individual": ["t1", "t2"],
                "entity": ["t1_left", "t2_left"],
                "side": ["left", "left"],
                "split": ["train", "test"],
            }
        )
    )


def test_local_write_is_atomic_and_readable(tmp_path):
    target = tmp_path / "nested" / "x.bin"
    rio.write_bytes(target, b"hello")
    assert rio.read_bytes(target) == b"hello"
    assert [p.name for p in target.parent.iterdir()] == ["x.bin"]  # no temporary file left behind
    assert rio.exists(target) and not rio.exists(tmp_path / "missing")


def test_images_round_trip_through_s3(s3_bucket, s3_server):
    pixels = np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8)
    uri = rio.join(s3_bucket, "images", "cat 1.png")  # spaces in names survive
    rio.write_image(uri, Image.fromarray(pixels))
    assert rio.exists(uri)
    assert np.array_equal(np.asarray(rio.read_image(uri)), pixels)
    # The object really is on the endpoint, not in a local cache.
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_server).list_objects_v2(
        Bucket=s3_bucket.removeprefix("s3://"))["Contents"]]
    assert keys == ["images/cat 1.png"]


def test_manifest_round_trip_and_file_check_on_s3(s3_bucket):
    df = _tiny_manifest(f"{s3_bucket}/img")
    rio.write_image(df["image_uri"][0], Image.new("RGB", (4, 4)))
    uri = f"{s3_bucket}/manifest.parquet"
    manifest.write(df, uri)
    assert manifest.read(uri).equals(df)
    problems = manifest.validate(df, check_files=True)
    assert len(problems) == 1 and problems[0].rows == (1,) and "does not exist" in problems[0].message


def test_reading_a_missing_manifest_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="reid_core.data.convert"):
        manifest.read(str(tmp_path / "nope.parquet"))


def test_truncated_image_fails_on_read(tmp_path):
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), "red").save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:100])
    assert rio.read_image(good).size == (64, 64)
    with pytest.raises(OSError):
        rio.read_image(bad)
