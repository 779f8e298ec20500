"""reid reproduce: the claims as data, the report beside the papers' numbers, usage errors, and the smallest
claim (aer-lambda-dve) end to end on Ray with MLflow."""

from __future__ import annotations

import polars as pl
import pytest
from mlflow import MlflowClient

from reid_core.cli import app
from reid_core.cli import reproduce as reproduce_cli
from reid_core.cli.options import run_command
from reid_core.methods.registry import get_method
from reid_core.reports import claims
from reid_core.reports import reproduce as report
from reid_core.reports.compare import summarize
from reid_core.settings import Settings

TINY = ["--epochs", "1", "--set", "batch.ids_per_batch=4", "--set", "batch.images_per_id=2",
        "--set", "input.size=48", "--set", "backbone.kwargs={}"]


def test_every_claim_names_real_methods_keys_and_its_reference():
    assert "reproduce" in app.COMMANDS
    for claim in claims.CLAIMS.values():
        names = [arm.name for arm in claim.arms]
        assert claim.reference in names and len(set(names)) == len(names)
        for arm in claim.arms:  # every override is a valid config key of the arm's method
            get_method(arm.method).config("cpu", dict(arm.overrides))
        arms = {r.arm.split(">")[0] for r in claim.reported}
        assert arms <= set(names) | set(claims.DATASET_OF), claim.name
        assert all(r.where.startswith(("AER", "PAW-ViT", "CARE")) for r in claim.reported)
    # the papers' numbers, spot-checked against the tables
    background = {(r.arm, r.view, r.metric): r.value for r in claims.CLAIMS["aer-background"].reported}
    assert background[("original", "masked_images", "mmAP")] == 60.2
    assert background[("masked", "masked_images", "mmAP")] == 66.9
    tokens = {(r.arm, r.metric): (r.value, r.ci95) for r in claims.CLAIMS["care-tokens"].reported}
    assert tokens[("w4", "mAP")] == (56.8, 0.2) and tokens[("w16", "mAP")] == (53.5, 0.9)


def _runs(rows):
    return pl.DataFrame([{"method": "dve", "species": "tiger", "protocol": "probe_gallery", **r} for r in rows],
                        infer_schema_length=None)


def test_effects_give_direction_separation_and_their_change():
    claim = claims.CLAIMS["aer-lambda-dve"]
    runs = _runs([{"arm": "lambda_dve_0", "seed": s, "test.mAP": v, "test.rank1": 0.5}
                  for s, v in enumerate((0.40, 0.41, 0.42))]
                 + [{"arm": "lambda_dve_preset", "seed": s, "test.mAP": v, "test.rank1": 0.6}
                    for s, v in enumerate((0.50, 0.51, 0.52))])
    summary = summarize(runs)
    [effect] = report.effects(claim, summary)
    assert effect["ours: change (points)"] == "+10.0" and effect["direction"] == "up"
    assert effect["95% intervals separate"] == "yes"  # 41 ± 2.5 against 51 ± 2.5
    assert effect["theirs: change"] == "+1.7 (ATRW mAP)" and effect["same direction"] == "yes"

    close = summarize(_runs([{"arm": "lambda_dve_0", "seed": s, "test.mAP": v} for s, v in enumerate((0.3, 0.5))]
                            + [{"arm": "lambda_dve_preset", "seed": s, "test.mAP": v}
                               for s, v in enumerate((0.35, 0.45))]))
    [effect] = report.effects(claim, close)
    assert effect["direction"] == "flat" and effect["95% intervals separate"] == "no"
    assert effect["same direction"] == "no"

    text = report.report(claim, runs, summary, preset="cpu", data="synthetic")
    assert "| tiger | lambda_dve_preset |" in text and "0.500 / 0.510 / 0.520" in text
    assert "ATRW mAP 64.9" in text and "Cannot show here" not in text


def test_transfer_report_compares_the_diagonal_with_its_column():
    claim = claims.CLAIMS["aer-transfer"]
    rows = []
    for train in ("tiger", "yak"):
        for seed in range(3):
            own = {"tiger": 0.6, "yak": 0.8}[train] + 0.01 * seed
            other = "yak" if train == "tiger" else "tiger"
            rows.append({"arm": "dve", "species": train, "seed": seed, "test.mAP": own,
                         f"test.on_{other}.mAP": 0.2 + 0.01 * seed})
    summary = summarize(_runs(rows))
    matrix = report.transfer_matrix(summary)
    cell = matrix.filter((pl.col("train_species") == "tiger") & (pl.col("test_species") == "yak"))
    assert cell["mAP"][0] == pytest.approx(0.21)
    effects = {e["trained on"]: e for e in report.transfer_effects(claim, summary)}
    tiger = effects["tiger (diagonal) vs yak"]
    assert tiger["ours: diagonal minus transfer (points)"] == "+40.0" and tiger["95% intervals separate"] == "yes"
    assert tiger["theirs"] == "ATRW mmAP 68.6 vs 49.5 (+19.1)" and tiger["same direction"] == "yes"


def test_usage_errors_are_one_line(tiny_synthetic, capsys):
    assert app.main(["reproduce", "no-such-claim"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "invalid choice: 'no-such-claim'" in err and "aer-lambda-dve" in err
    # aer-background compares original with background-removed images: the tiny fixture has none
    assert run_command(reproduce_cli.main, ["aer-background", "--manifest", tiny_synthetic, *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "masked_uri" in err and "reid segment" in err
    assert run_command(reproduce_cli.main, ["aer-transfer", "--manifest", tiny_synthetic, *TINY]) == 2
    assert "no rows of species 'elephant'" in capsys.readouterr().err  # its default species: tiger, yak, elephant
    assert run_command(reproduce_cli.main, ["aer-transfer", "--manifest", tiny_synthetic, "--species", "tiger",
                                            *TINY]) == 2
    assert "at least two species" in capsys.readouterr().err


@pytest.mark.slow
def test_the_smallest_claim_runs_end_to_end(tiny_synthetic, ray_local, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["aer-lambda-dve", "--manifest", tiny_synthetic, "--seeds", "2", *TINY, "--out", str(out)]
    assert run_command(reproduce_cli.main, argv) == 0
    printed = capsys.readouterr().out
    with capsys.disabled():
        print(printed)  # shown with -s
    assert "## aer-lambda-dve: AER Table A.3" in printed
    assert "| tiger | lambda_dve_0 | lambda_DVE = 0 (lambda_dve = 0.0) |" in printed
    effect = next(line for line in printed.splitlines() if line.startswith("| tiger | lambda_dve_preset vs"))
    assert "+1.7 (ATRW mAP)" in effect and effect.count("|") == 9

    runs = pl.read_parquet(out / "runs.parquet")
    assert sorted(zip(runs["arm"], runs["seed"], strict=True)) == [
        ("lambda_dve_0", 0), ("lambda_dve_0", 1), ("lambda_dve_preset", 0), ("lambda_dve_preset", 1)]
    assert runs["test.mAP"].is_between(0, 1).all()
    assert (out / "claim.md").read_text() in printed

    client = MlflowClient(Settings.from_env().tracking_uri)
    experiment = client.get_experiment_by_name("reid-reproduce")
    [parent] = client.search_runs([experiment.experiment_id],
                                 "tags.claim = 'aer-lambda-dve' and tags.run_kind = 'compare'")
    assert parent.info.run_name == "reproduce-aer-lambda-dve" and parent.info.status == "FINISHED"
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_arm = {(c.data.params["arm"], c.data.params["seed"]): c for c in children}
    assert sorted(by_arm) == [("lambda_dve_0", "0"), ("lambda_dve_0", "1"),
                              ("lambda_dve_preset", "0"), ("lambda_dve_preset", "1")]
    assert by_arm[("lambda_dve_0", "0")].data.params["config.losses.lambda_dve"] == "0.0"
    assert by_arm[("lambda_dve_preset", "0")].data.params["config.losses.lambda_dve"] == "0.4"  # the cpu preset's
    assert "compare.lambda_dve_preset.tiger.mAP.mean" in parent.data.metrics
    logged = client.download_artifacts(parent.info.run_id, "reproduce/claim.md", str(tmp_path))
    assert open(logged).read() == (out / "claim.md").read_text()
