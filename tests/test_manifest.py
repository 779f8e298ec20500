import polars as pl
import pytest

from reid_core.data import manifest


def _valid() -> pl.DataFrame:
    return manifest.conform(
        pl.DataFrame(
            {
                "image_id": ["a", "b", "c", "d"],
                "image_uri": ["/d/a.jpg", "/d/b.jpg", "/d/c.jpg", "/d/d.jpg"],
                "species": ["yak"] * 4,
                "individual": ["1", "1", "2", None],
                "entity": ["1", "1", "2", None],
                "side": ["left", "left", "unknown", "unknown"],
                "split": ["train", "val", "test", "test"],
                "role": [None, None, "gallery", "query"],
            }
        )
    )


def test_valid_manifest_has_no_problems_and_core_columns_first():
    df = _valid()
    assert manifest.validate(df) == []
    assert df.columns[:10] == list(manifest.CORE_SCHEMA)
    assert df.schema["frame"] == pl.Int64


def test_every_problem_is_reported_with_row_column_and_fix():
    df = _valid().with_columns(
        pl.Series("image_id", ["a", "a", "c", "d"]),
        pl.Series("split", ["train", "val", "tset", "test"]),
        pl.Series("individual", ["1", "1", None, None]),
    )
    with pytest.raises(manifest.ManifestError) as err:
        manifest.check(df, source="m.parquet")
    text = str(err.value)
    assert "m.parquet rows 0, 1 (image_id 'a', 'a'), column 'image_id': duplicate image_id. Fix:" in text
    assert "m.parquet row 2 (image_id 'c'), column 'split': unknown split value (e.g. 'tset'). Fix: use one of train, val, test" in text
    assert "m.parquet row 2 (image_id 'c'), column 'individual': is empty on a row that is not a query" in text
    assert len(err.value.problems) == 3


def test_missing_column_and_wrong_type():
    df = _valid().drop("species").with_columns(pl.col("frame").cast(pl.String))
    messages = [p.format("m") for p in manifest.validate(df)]
    assert any("required column 'species' is missing" in m for m in messages)
    assert any("column 'frame': has type String, expected Int64" in m for m in messages)


def test_entities_shared_by_train_and_test_are_flagged_unless_allowed():
    df = _valid().with_columns(pl.Series("entity", ["1", "1", "1", None]))
    problems = manifest.validate(df)
    assert len(problems) == 1 and "in both 'train' and 'test'" in problems[0].message and problems[0].rows == (2,)
    assert manifest.validate(df, disjoint=()) == []


def test_summary_counts_per_split():
    summary = manifest.summary(_valid()).filter(pl.col("split") == "test")
    assert summary.select("images", "individuals", "entities").row(0) == (2, 1, 1)
