"""The row-stage template's plan, without Ray: which rows a rerun skips, redoes and retries."""

import polars as pl
import pyarrow as pa

from reid_core.pipelines import row_stage

SCHEMA = pa.schema([("image_id", pa.string()), ("out_uri", pa.string()), ("x_status", pa.string()),
                    ("x_error", pa.string()), ("x_config", pa.string()), ("x_time", pa.float64())])
STAGE = row_stage.Stage(name="x", schema=SCHEMA, status="x_status", error="x_error", config="x_config", time="x_time",
                        merged={"x_status": pl.String}, targets={"out_uri": "_target"}, files=("_target",))


def test_plan_skips_done_rows_redoes_missing_files_and_retries_failures(tmp_path):
    out = str(tmp_path / "out")
    rows = pl.DataFrame({"image_id": ["a", "b", "c", "d"], "x_status": [None] * 4}, schema_overrides={
        "x_status": pl.String}).with_columns(pl.format(f"{out}/{{}}.png", "image_id").alias("_target"),
                                             pl.lit("v1").alias(row_stage.CONFIG))
    (tmp_path / "out").mkdir()
    for name in ("a", "b"):  # c's file is missing: a killed run's record without its file
        (tmp_path / "out" / f"{name}.png").write_bytes(b"png")
    (tmp_path / "out" / ("a.png.tmp-" + "0" * 32)).write_bytes(b"half")  # a killed write's leftover
    records = [{"image_id": i, "out_uri": f"{out}/{i}.png", "x_status": s, "x_error": None, "x_config": c,
                "x_time": 1.0} for i, s, c in (("a", "ok", "v1"), ("b", "ok", "v0"), ("c", "ok", "v1"),
                                               ("d", "failed", "v1"), ("gone", "ok", "v1"))]
    row_stage.write_journal_part(f"{out}/_journal", pa.Table.from_pylist(records, schema=SCHEMA), None)

    plan = row_stage.plan(STAGE, rows, ["image_id", "x_status"], out)
    assert plan.todo["image_id"].to_list() == ["c", "d"] and plan.skipped == 2 and plan.stale_removed == 1
    assert sorted(plan.previous["image_id"]) == ["a", "b", "d"] and plan.foreign["image_id"].to_list() == ["gone"]
    assert plan.notes and "1 finished rows skipped were made with other settings (v0)" in plan.notes[0]
    # A stage that redoes rows made with other settings (identify's embeddings under a new model).
    strict = row_stage.plan(row_stage.Stage(**{**STAGE.__dict__, "redo_other_config": True}), rows,
                            ["image_id", "x_status"], out)
    assert strict.todo["image_id"].to_list() == ["b", "c", "d"] and not strict.notes

    fresh = pl.DataFrame([{**records[2], "x_time": 2.0}, {**records[3], "x_status": "ok", "x_time": 2.0}],
                         schema=pl.from_arrow(SCHEMA.empty_table()).schema)
    everything = row_stage.finish(STAGE, plan, fresh, write_manifest=False)
    merged = row_stage.merge_records(plan.manifest(), everything, STAGE.merged, STAGE.time)
    assert merged["x_status"].to_list() == ["ok", "ok", "ok", "ok"]
    journal = list((tmp_path / "out" / "_journal").iterdir())
    assert len(journal) == 1 and pl.read_parquet(journal[0]).height == 5  # compacted: 4 rows and the foreign one
