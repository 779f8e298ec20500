"""The cross-species transfer matrix on two synthetic species: Ray tasks, files, MLflow run, changes."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from lifecycle_support import direct_metrics, publish_model, tiny_dve, two_species
from mlflow import MlflowClient
from PIL import Image

from reid_core import tracking
from reid_core.cli import transfer as transfer_cli
from reid_core.data import manifest
from reid_core.engine.evaluate import embed_manifest
from reid_core.lifecycle.local_rerank import LocalRerank, fused_metrics
from reid_core.lifecycle.promote import PromotionRequest, promote
from reid_core.methods.registry import method_names
from reid_core.pipelines.transfer import ModelRef, TransferRequest, evaluate_cell, run_transfer_matrix
from reid_core.reports import transfer as transfer_report
from reid_core.settings import Settings

FILES = ["transfer_heatmap.png", "transfer_matrix.csv", "transfer_matrix.md", "transfer_matrix.parquet"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """tiger v1 and yak v1 in production; tiger v2 (collapsed: one embedding for all) not promoted."""
    settings = Settings.from_env({"REID_HOME": str(tmp_path_factory.mktemp("transfer_home"))})
    manifest_uri = two_species(tmp_path_factory.mktemp("transfer_data"))
    models = {("tiger", 1): tiny_dve(0), ("yak", 1): tiny_dve(1), ("tiger", 2): tiny_dve(2, collapsed=True)}
    for (species, version), restored in models.items():
        assert publish_model(restored, manifest_uri, species, settings).version == str(version)
    for species in ("tiger", "yak"):
        promote(PromotionRequest(name=f"reid-dve-{species}", manifest=manifest_uri, version="1"), settings)
    return settings, manifest_uri, models


def test_two_species_matrix_logged_with_changes(store, ray_local, tmp_path):
    settings, manifest_uri, models = store
    client = MlflowClient(settings.tracking_uri)

    first = run_transfer_matrix(TransferRequest(method="dve", manifest=manifest_uri, dataset="synthetic",
                                                out_dir=str(tmp_path / "first")), settings)

    table = first.table.sort("train_species", "test_species")
    assert table.select("train_species", "test_species").rows() == [
        ("tiger", "tiger"), ("tiger", "yak"), ("yak", "tiger"), ("yak", "yak")]
    assert set(table["model"]) == {"reid-dve-tiger v1 (@production)", "reid-dve-yak v1 (@production)"}
    assert set(table["protocol"]) == {"disjoint"} and table["n_images"].to_list() == [8, 8, 8, 8]
    # Each cell equals the in-memory network evaluated directly on that species' test split.
    for row in table.iter_rows(named=True):
        expected = direct_metrics(models[(row["train_species"], 1)], manifest_uri, row["test_species"])
        assert row["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
        assert row["rank1"] == pytest.approx(expected["rank1"], abs=1e-6)
    assert first.previous_run_id is None and first.changes is None and first.skipped == []

    # Files: the long table as Parquet/CSV, the paper-style table, a heatmap.
    assert sorted(p.name for p in first.out_dir.iterdir()) == FILES
    assert pl.read_parquet(first.out_dir / "transfer_matrix.parquet").equals(first.table)
    assert pl.read_csv(first.out_dir / "transfer_matrix.csv")["mAP"].to_list() == pytest.approx(first.table["mAP"].to_list())
    lines = first.markdown.splitlines()
    assert lines[0] == "| Training data | Model | tiger mAP | tiger R@1 | yak mAP | yak R@1 |"
    tiger_row = table.filter(pl.col("train_species") == "tiger")
    assert lines[2] == ("| tiger | reid-dve-tiger v1 (@production) | "
                        + " | ".join(f"{100 * v:.1f}" for r in tiger_row.iter_rows(named=True)
                                     for v in (r["mAP"], r["rank1"])) + " |")
    with Image.open(first.out_dir / "transfer_heatmap.png") as png:
        assert png.format == "PNG" and png.width > 200 and png.height > 100

    # The MLflow run: one metric per cell and metric, the models pinned as params, the files as artifacts.
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["run_kind"] == "transfer_matrix"
    assert run.data.params["model.tiger"] == "models:/reid-dve-tiger/1"
    for row in table.iter_rows(named=True):
        key = f"transfer.{row['train_species']}.{row['test_species']}"
        assert run.data.metrics[f"{key}.mAP"] == pytest.approx(row["mAP"])
        assert run.data.metrics[f"{key}.rank1"] == pytest.approx(row["rank1"])
    artifacts = client.list_artifacts(first.run_id, "transfer_matrix")
    assert sorted(Path(a.path).name for a in artifacts) == FILES

    # A second run with tiger's unpromoted v2 reports the change per cell against the first run.
    second = run_transfer_matrix(TransferRequest(method="dve", manifest=manifest_uri, species=["tiger", "yak"],
                                                 models={"tiger": "2"}, out_dir=str(tmp_path / "second")), settings)
    assert second.previous_run_id == first.run_id
    changes = second.changes.sort("train_species", "test_species")
    new = second.table.sort("train_species", "test_species")
    assert changes["delta_mAP"].to_list() == pytest.approx((new["mAP"] - table["mAP"]).to_list())
    assert changes["delta_rank1"].to_list() == pytest.approx((new["rank1"] - table["rank1"]).to_list())
    assert all(d != 0 for d in changes.filter(pl.col("train_species") == "tiger")["delta_mAP"])
    collapsed = direct_metrics(models[("tiger", 2)], manifest_uri, "yak")
    assert new.filter((pl.col("train_species") == "tiger") & (pl.col("test_species") == "yak"))["mAP"][0] == (
        pytest.approx(collapsed["mAP"], abs=1e-6))
    assert changes["model_changed"].to_list() == [True, True, False, False]
    assert changes.filter(pl.col("train_species") == "yak")["delta_mAP"].to_list() == [0.0, 0.0]
    assert "transfer_changes.md" in {p.name for p in second.out_dir.iterdir()}
    assert client.get_run(second.run_id).data.tags["previous_run_id"] == first.run_id


@pytest.mark.slow
def test_cli_errors_name_the_missing_model_and_the_missing_split(store, monkeypatch, capsys, tmp_path):
    settings, manifest_uri, _ = store
    monkeypatch.setenv("REID_HOME", str(settings.home))

    assert transfer_cli.main(["--manifest", manifest_uri, "--species", "tiger", "--alias", "staging"]) == 2
    assert "reid-dve-tiger has no alias 'staging'; list its versions with" in capsys.readouterr().err

    assert transfer_cli.main(["--method", "nope", "--manifest", manifest_uri]) == 2
    assert f"unknown method 'nope'; registered methods: {', '.join(method_names())}" in capsys.readouterr().err

    assert transfer_cli.main(["--manifest", manifest_uri, "--model", "tiger=7"]) == 2
    assert "reid-dve-tiger has no version 7; list its versions with" in capsys.readouterr().err

    no_yak_test = str(tmp_path / "no_yak_test.parquet")
    df = manifest.read(manifest_uri)
    manifest.write(df.filter((pl.col("species") != "yak") | (pl.col("split") != "test")), no_yak_test)
    assert transfer_cli.main(["--manifest", no_yak_test, "--species", "tiger", "--test-species", "tiger,yak"]) == 2
    err = capsys.readouterr().err
    assert f"manifest {no_yak_test} has no 'test' rows for species 'yak'" in err
    assert tracking.latest_run("reid-dve", "tags.run_kind = 'transfer_matrix' and attributes.status = 'FAILED'",
                               settings=settings) is None  # failed before any run was created


def test_the_transfer_tables_right_align_the_numbers_and_say_new_for_a_new_cell():
    table = pl.DataFrame({"train_species": ["tiger", "tiger"], "test_species": ["tiger", "yak"],
                          "protocol": ["atrw", "probe_gallery"], "model": ["reid-dve-tiger v1"] * 2,
                          "model_uri": ["models:/reid-dve-tiger/2"] * 2,
                          "mAP": [0.5, 0.25], "rank1": [0.75, None], "mmAP": [0.625, None],
                          "rank1_single": [0.8, None], "rank1_cross": [0.7, None]})
    lines = transfer_report.paper_table(table).splitlines()
    assert lines[:3] == ["| Training data | Model | tiger mmAP | tiger R@1(s) | tiger R@1(m) | yak mAP | yak R@1 |",
                         "|---|---|---:|---:|---:|---:|---:|",
                         "| tiger | reid-dve-tiger v1 | 62.5 | 80.0 | 70.0 | 25.0 | - |"]
    delta = transfer_report.changes(table, {"transfer.tiger.tiger.mAP": 0.4, "transfer.tiger.tiger.rank1": 0.75},
                                    {"model.tiger": "models:/reid-dve-tiger/1"})
    lines = transfer_report.format_changes(delta).splitlines()
    assert lines[:4] == ["| train | test | mAP | mAP change | rank-1 | rank-1 change | model changed |",
                         "|---|---|---:|---:|---:|---:|---|",
                         "| tiger | tiger | 50.0 | +10.0 | 75.0 | +0.0 | yes |",
                         "| tiger | yak | 25.0 | new | - | new | yes |"]


def test_reranked_columns_appear_only_when_computed():
    table = pl.DataFrame({"train_species": ["tiger"], "test_species": ["tiger"], "protocol": ["disjoint"],
                          "model": ["reid-dve-tiger v1"], "model_uri": ["models:/reid-dve-tiger/1"],
                          "mAP": [0.5], "rank1": [0.75], "fused_mAP": [0.625], "fused_rank1": [1.0]})
    assert transfer_report.paper_table(table).splitlines()[:3] == [
        "| Training data | Model | tiger mAP | tiger R@1 | tiger mAP +local | tiger R@1 +local |",
        "|---|---|---:|---:|---:|---:|",
        "| tiger | reid-dve-tiger v1 | 50.0 | 75.0 | 62.5 | 100.0 |"]
    none = table.with_columns(pl.lit(None, pl.Float64).alias("fused_mAP"), pl.lit(None, pl.Float64).alias("fused_rank1"))
    assert "+local" not in transfer_report.paper_table(none)


@pytest.mark.slow
def test_a_cell_reranked_by_local_matching_equals_the_in_memory_model(store, tiny_synthetic, single_torch_thread):
    # tiny_synthetic's validation split has two tiger individuals to calibrate on (two_species' has one).
    settings, _, models = store
    ref = ModelRef("tiger", "models:/reid-dve-tiger/1", "reid-dve-tiger v1")
    rerank = LocalRerank("sift", shortlist=5)
    cell = evaluate_cell(ref, tiny_synthetic, "tiger", settings, use_masked=True, threads=1, rerank=rerank)
    restored = models[("tiger", 1)]
    transform = restored.method.eval_transform(restored.config)
    rows = manifest.read(tiny_synthetic).filter(pl.col("species") == "tiger")
    direct = fused_metrics(lambda part, column: embed_manifest(restored.method, restored.model, part, transform,
                                                               column=column), rows, True, rerank)
    assert cell["fused_mAP"] == pytest.approx(direct["fused.mAP"], abs=1e-6)
    assert cell["fused_rank1"] == pytest.approx(direct["fused.rank1"], abs=1e-6)
    assert cell["mAP"] == pytest.approx(direct_metrics(restored, tiny_synthetic, "tiger")["mAP"], abs=1e-6)
