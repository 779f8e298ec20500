"""workflows/compare.py: the seed statistics, the Table 2 layout, usage errors, and a real run on Ray."""

from __future__ import annotations

import math

import polars as pl
import pytest
from mlflow import MlflowClient

from reid_core.cli import compare as compare_cli
from reid_core.cli.options import run_command
from reid_core.lifecycle.local_rerank import LocalRerank
from reid_core.lifecycle.train_and_register import finished_checkpoint
from reid_core.pipelines import compare
from reid_core.reports import compare as compare_report
from reid_core.settings import Settings

TINY = ["--preset", "cpu", "--epochs", "1", "--set", "batch.ids_per_batch=4", "--set", "batch.images_per_id=2",
        "--set", "input.size=48", "--set", "backbone.kwargs={}"]


def test_ci95_is_the_t_interval_half_width():
    mean, sd, half = compare_report.ci95([0.5, 0.7])
    assert mean == pytest.approx(0.6)
    assert sd == pytest.approx(0.141421, abs=1e-6)
    assert half == pytest.approx(12.7062 * 0.141421 / math.sqrt(2), abs=1e-4)  # 1.2706
    assert half == pytest.approx(1.2706, abs=1e-4)
    mean, sd, half = compare_report.ci95([0.4])
    assert mean == 0.4 and math.isnan(sd) and math.isnan(half)
    assert compare_report.format_cell(0.6, 0.012706) == "60.0 ± 1.3"
    assert compare_report.format_cell(0.4, math.nan) == "40.0 ±n/a"
    assert compare_report.format_cell(None, None) == "-"


def test_table_has_a_row_per_method_and_the_atrw_columns_only_where_computed():
    atrw = {"test.mmAP": 0.5, "test.rank1_single": 0.8, "test.rank1_cross": 0.6}
    runs = pl.DataFrame([
        {"method": "dve", "species": "tiger", "seed": 0, "protocol": "atrw", "test.mAP": 0.5, "test.rank1": 0.7, **atrw},
        {"method": "dve", "species": "tiger", "seed": 1, "protocol": "atrw", "test.mAP": 0.7, "test.rank1": 0.9, **atrw},
        {"method": "dve", "species": "yak", "seed": 0, "protocol": "probe_gallery", "test.mAP": 0.2, "test.rank1": 0.3},
        {"method": "arbase", "species": "tiger", "seed": 0, "protocol": "atrw", "test.mAP": 0.4, "test.rank1": 0.6,
         **atrw},
        {"method": "arbase", "species": "yak", "seed": 0, "protocol": "probe_gallery", "test.mAP": 0.1,
         "test.rank1": 0.2},
    ], infer_schema_length=None)
    summary = compare_report.summarize(runs)
    row = summary.filter((pl.col("method") == "dve") & (pl.col("species") == "tiger") & (pl.col("metric") == "mAP"))
    assert row["n"][0] == 2 and row["mean"][0] == pytest.approx(0.6) and row["ci95"][0] == pytest.approx(1.2706, abs=1e-4)
    assert summary.filter(pl.col("species") == "yak")["metric"].to_list() == ["mAP", "rank1"] * 2

    lines = compare_report.paper_table(summary).splitlines()
    assert lines[0] == "| Method | tiger mAP | tiger R@1 | tiger mmAP | tiger R@1(s) | tiger R@1(c) | yak mAP | yak R@1 |"
    assert lines[2] == "| dve | 60.0 ± 127.1 | 80.0 ± 127.1 | 50.0 ± 0.0 | 80.0 ± 0.0 | 60.0 ± 0.0 | 20.0 ±n/a | 30.0 ±n/a |"
    assert lines[3].startswith("| arbase | 40.0 ±n/a |")
    assert "tiger: atrw, yak: probe_gallery" in lines[-1]


def test_an_invalid_key_is_a_one_line_usage_error(tiny_synthetic, capsys):
    argv = ["--manifest", tiny_synthetic, "--methods", "dve", "--species", "tiger", *TINY,
            "--set", "losses.lambda_dvee=0"]
    assert run_command(compare_cli.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: unknown config key 'losses.lambda_dvee' for method 'dve'")
    assert "losses.lambda_dve" in err  # the valid keys are named

    assert run_command(compare_cli.main, ["--manifest", tiny_synthetic, "--species", "elephant", *TINY]) == 2
    assert "no rows of species 'elephant'" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_trains_seeds_on_ray_logs_and_writes(tiny_synthetic, ray_local, tmp_path, capsys):
    settings = Settings.from_env()
    out = tmp_path / "out"
    argv = ["--manifest", tiny_synthetic, "--methods", "dve", "--species", "tiger", "--seeds", "2", *TINY,
            "--out", str(out), "--matcher", "sift", "--shortlist", "5"]
    assert run_command(compare_cli.main, argv) == 0
    printed = capsys.readouterr().out
    with capsys.disabled():
        print(printed)  # shown with -s
    lines = printed.splitlines()
    header = next(line for line in lines if line.startswith("| Method"))
    assert header == "| Method | tiger mAP | tiger R@1 | tiger mAP +local | tiger R@1 +local |"
    assert any(line.startswith("| dve | ") and line.count("±") == 4 for line in lines)

    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == 2 and sorted(runs["seed"].to_list()) == [0, 1]
    assert runs["test.mAP"].is_between(0, 1).all() and runs["epochs"].to_list() == [1, 1]
    summary = pl.read_parquet(out / "summary.parquet")
    mAP = summary.filter(pl.col("metric") == "mAP")
    assert mAP["n"].to_list() == [2] and mAP["mean"][0] == pytest.approx(runs["test.mAP"].mean())
    for name in ("runs.csv", "runs.md", "summary.csv", "summary.md"):
        assert (out / name).stat().st_size > 0
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name("reid-compare")
    parent = client.search_runs([experiment.experiment_id], "tags.run_kind = 'compare'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    parent_id = parent[0].info.run_id
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1"]
    for child in children:
        assert child.data.params["method"] == "dve" and child.data.params["species"] == "tiger"
        assert child.data.params["preset"] == "cpu" and child.data.params["config.input.size"] == "48"
        assert 0 <= child.data.metrics["test.mAP"] <= 1
    assert "compare.dve.tiger.mAP.mean" in parent[0].data.metrics

    # A rerun finds the same checkpoint folders (same config hash), finished, so it would not train again.
    request = compare.CompareRequest(manifest=tiny_synthetic, methods=["dve"], species=["tiger"], seeds=2,
                                     preset="cpu", epochs=1, overrides={"batch.ids_per_batch": 4,
                                                                        "batch.images_per_id": 2, "input.size": 48,
                                                                        "backbone.kwargs": {}})
    specs = compare.plan_runs(request, settings)
    assert [str(finished_checkpoint(s.directory, s.epochs)) for s in specs] == runs["checkpoint"].to_list()
    assert [s.directory.name for s in specs] == [f"dve-tiger-seed{i}-{runs['config_hash'][0]}" for i in (0, 1)]
    # In-process: restore and test only; the re-ranking (12 test photos, 5 neighbours each) gives what the
    # Ray task gave.
    again = compare.train_and_test(specs[0], threads=1, rerank=LocalRerank("sift", 5))
    assert again["skipped_training"] and again["seed"] == 0
    first = runs.filter(pl.col("seed") == 0)
    assert again["test.mAP"] == pytest.approx(first["test.mAP"][0])
    assert again["test.fused.mAP"] == pytest.approx(first["test.fused.mAP"][0])
    assert 30 <= again["test.fused.pairs_matched"] <= 12 * 5
    assert parent[0].data.params["matcher"] == "sift"


def test_arms_are_variants_of_a_method_with_their_own_checkpoints_and_extra_tests(tiny_synthetic):
    settings = Settings.from_env()
    tiny = {"batch.ids_per_batch": 4, "batch.images_per_id": 2, "input.size": 48, "backbone.kwargs": {}}
    request = compare.CompareRequest(
        manifest=tiny_synthetic, methods=[], species=["tiger"], seeds=2, preset="cpu", epochs=1, overrides=tiny,
        arms=[compare.Arm("no_dve", "dve", {"losses.lambda_dve": 0.0}), compare.Arm("original", "dve", use_masked=False)],
        extra_tests=[compare.ExtraTest("on_tiger", species="tiger"), compare.ExtraTest("originals", use_masked=False)])
    specs = compare.plan_runs(request, settings)
    assert [(s.arm, s.job.seed) for s in specs] == [("no_dve", 0), ("no_dve", 1), ("original", 0), ("original", 1)]
    assert specs[0].config["losses"]["lambda_dve"] == 0.0 and specs[2].config["losses"]["lambda_dve"] == 0.4
    assert [s.job.use_masked for s in specs] == [True, True, False, False]
    assert len({s.directory for s in specs}) == 4  # each arm x seed its own checkpoints
    assert [t.name for t in specs[0].extra_tests] == ["originals"]  # its own species' split is test.* already
    with pytest.raises(ValueError, match="arm name 'a=b'"):
        compare.Arm("a=b", "dve")  # '=' cannot be part of an MLflow metric key
