"""Promotion to production behind a gate: first promotion, better, worse, force, rollback, errors.

The gate computes real metrics on a real test manifest. Which model is better is known in advance:
on ``query_equals_gallery`` every test query is the very image of its gallery positive, so any
image-dependent model scores mAP 1.0 and a collapsed one (the same embedding for every image) less.
"""

from __future__ import annotations

import pytest
import torch
from lifecycle_support import direct_metrics, publish_model, query_equals_gallery, tiny_dve, two_species
from mlflow import MlflowClient

from reid_core import tracking
from reid_core.cli import promote as promote_cli
from reid_core.lifecycle.promote import PromotionRequest, passes_gate, promote, rollback
from reid_core.lifecycle.publish import EmbeddingModel
from reid_core.settings import Settings

NAME = "reid-dve-tiger"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store and manifest for the module: three tiger versions, none promoted yet.

    v1 collapsed (bad), v2 image-dependent (good), v3 collapsed (bad).
    """
    home = tmp_path_factory.mktemp("promote_home")
    settings = Settings.from_env({"REID_HOME": str(home)})
    data = tmp_path_factory.mktemp("promote_data")
    manifest_uri = query_equals_gallery(two_species(data), data)
    models = {1: tiny_dve(0, collapsed=True), 2: tiny_dve(1), 3: tiny_dve(2, collapsed=True)}
    for version, restored in models.items():
        assert publish_model(restored, manifest_uri, "tiger", settings).version == str(version)
    return settings, manifest_uri, models


def tags(settings: Settings, version: int) -> dict[str, str]:
    return MlflowClient(settings.tracking_uri).get_model_version(NAME, str(version)).tags


def production(settings: Settings) -> str | None:
    return tracking.production_version(NAME, settings)


def test_passes_gate_allows_ties_and_tolerance():
    assert passes_gate(0.5, 0.5) and passes_gate(0.6, 0.5)
    assert not passes_gate(0.49, 0.5)
    assert passes_gate(0.49, 0.5, tolerance=0.02) and not passes_gate(0.47, 0.5, tolerance=0.02)


@pytest.mark.slow
def test_promotion_lifecycle(store, monkeypatch, capsys):
    settings, manifest_uri, models = store
    good = direct_metrics(models[2], manifest_uri, "tiger")
    bad = direct_metrics(models[1], manifest_uri, "tiger")
    assert good["mAP"] == 1.0 and bad["mAP"] < 1.0  # the premise of the manifest

    # First promotion: nothing to compare with, no gate.
    first = promote(PromotionRequest(name=NAME, manifest=manifest_uri, version="1"), settings)
    assert (first.promoted, first.decision, first.previous) == (True, "first_promotion", None)
    assert first.candidate_metrics == {}  # nothing evaluated
    assert production(settings) == "1"
    assert tags(settings, 1)["previous_production_version"] == "none"
    assert tags(settings, 1)["promotion_decision"] == "first_promotion" and "promoted_at" in tags(settings, 1)

    # Better: v2 beats the collapsed v1 on the gate metric.
    better = promote(PromotionRequest(name=NAME, manifest=manifest_uri, version="2"), settings)
    assert (better.promoted, better.decision, better.previous) == (True, "gate_passed", "1")
    assert better.candidate_metrics["mAP"] == pytest.approx(good["mAP"], abs=1e-6)
    assert better.production_metrics["mAP"] == pytest.approx(bad["mAP"], abs=1e-6)
    assert production(settings) == "2"
    v2 = tags(settings, 2)
    assert v2["previous_production_version"] == "1" and v2["promotion_decision"] == "gate_passed"
    assert v2["gate.metric"] == "mAP" and v2["gate.protocol"] == "disjoint" and v2["gate.manifest"] == manifest_uri
    assert float(v2["gate.candidate.mAP"]) == pytest.approx(1.0)
    assert float(v2["gate.production.mAP"]) == pytest.approx(bad["mAP"], abs=1e-5)
    assert tags(settings, 1)["superseded_by"] == "2"

    # The production model loads by alias and embeds images as the in-memory network does.
    loaded = tracking.load_model(f"models:/{NAME}@production", settings)
    images = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    expected = EmbeddingModel(models[2].method, models[2].model).eval()(images)
    embedding = loaded(images)
    assert embedding.shape == (3, 1024)
    torch.testing.assert_close(embedding, expected, rtol=1e-4, atol=1e-5)

    # Worse: v3 (the candidate alias) is rejected through the CLI (exit 1); production stays v2. Without
    # --manifest, the gate evaluates on the manifest the candidate was trained on (its `manifest` tag).
    monkeypatch.setenv("REID_HOME", str(settings.home))
    assert tracking.get_version_by_alias(NAME, "candidate", settings).version in (3, "3")
    code = promote_cli.main(["--model", NAME, "--alias", "candidate"])
    out = capsys.readouterr().out
    assert code == 1
    assert "v3 not promoted (gate_rejected)" in out and "worse than production v2 1.0000" in out
    assert production(settings) == "2"
    v3 = tags(settings, 3)
    assert v3["promotion_decision"] == "gate_rejected" and "promoted_at" not in v3
    assert v3["gate.manifest"] == manifest_uri
    assert float(v3["gate.candidate.mAP"]) < 1.0 and float(v3["gate.production.mAP"]) == pytest.approx(1.0)

    # A tolerance wide enough lets the same candidate through.
    tolerant = promote(PromotionRequest(name=NAME, manifest=manifest_uri, version="3", tolerance=1.0), settings)
    assert tolerant.promoted and tolerant.decision == "gate_passed"
    assert production(settings) == "3"
    rollback(NAME, "undo the tolerant promotion", settings)
    assert production(settings) == "2"

    # Force: needs a reason, skips the gate and records it.
    with pytest.raises(ValueError, match="--force needs --reason"):
        promote(PromotionRequest(name=NAME, manifest=manifest_uri, version="3", force=True), settings)
    forced = promote(PromotionRequest(name=NAME, manifest=manifest_uri, version="3", force=True,
                                      reason="field team asked for v3"), settings)
    assert (forced.promoted, forced.decision, forced.previous) == (True, "forced", "2")
    assert production(settings) == "3"
    assert tags(settings, 3)["promotion_reason"] == "field team asked for v3"
    assert tags(settings, 3)["previous_production_version"] == "2"

    # Already production: nothing to do.
    again = promote(PromotionRequest(name=NAME, manifest=manifest_uri, version="3"), settings)
    assert (again.promoted, again.decision) == (False, "already_production")

    # Rollback walks back the chain: v3 -> v2 -> v1, then there is nothing left.
    assert promote_cli.main(["--model", NAME, "--rollback", "--reason", "v3 regressed"]) == 0
    assert "rolled back from v3 to v2" in capsys.readouterr().out
    assert production(settings) == "2"
    assert tags(settings, 3)["rolled_back_to"] == "2" and tags(settings, 3)["rollback_reason"] == "v3 regressed"
    assert tags(settings, 2)["restored_from"] == "3"
    assert rollback(NAME, "further", settings).to_version == "1"
    with pytest.raises(tracking.ModelNotFoundError, match="was its first production version"):
        rollback(NAME, "too far", settings)
    assert production(settings) == "1"

    # The listing shows every version with its alias and decision.
    assert promote_cli.main(["--model", NAME, "--list"]) == 0
    listing = capsys.readouterr().out
    assert "| 3 | candidate |" in listing and "| 1 | production |" in listing and "gate_passed" in listing


@pytest.mark.slow
def test_errors_name_the_model_the_version_and_the_fix(store, monkeypatch, capsys, tmp_path):
    settings, manifest_uri, _ = store
    with pytest.raises(tracking.ModelNotFoundError, match=r"'reid-dve-lynx' does not exist; registered models: "
                                                          r"reid-dve-tiger"):
        promote(PromotionRequest(name="reid-dve-lynx", manifest=manifest_uri, version="1"), settings)
    with pytest.raises(tracking.ModelNotFoundError,
                       match=r"reid-dve-tiger has no version 99; list its versions with "
                             r"`python workflows/promote.py --model reid-dve-tiger --list`"):
        promote(PromotionRequest(name=NAME, manifest=manifest_uri, version="99"), settings)
    with pytest.raises(tracking.ModelNotFoundError, match="has no alias 'staging'"):
        promote(PromotionRequest(name=NAME, manifest=manifest_uri, alias="staging"), settings)
    with pytest.raises(ValueError, match="not a reid-<method>-<species> model name"):
        promote(PromotionRequest(name="tiger", manifest=manifest_uri, version="1"), settings)

    # A manifest without the species' test split: the message names the file and the fix.
    import polars as pl

    from reid_core.data import manifest

    no_test = str(tmp_path / "no_test.parquet")
    manifest.write(manifest.read(manifest_uri).filter(pl.col("split") != "test"), no_test)
    if tracking.production_version(NAME, settings) is None:
        tracking.set_alias(NAME, tracking.PRODUCTION, 1, settings)
    target = "2" if tracking.production_version(NAME, settings) != "2" else "3"
    monkeypatch.setenv("REID_HOME", str(settings.home))
    code = promote_cli.main(["--model", NAME, "--version", target, "--manifest", no_test])
    err = capsys.readouterr().err
    assert code == 2
    assert f"manifest {no_test} has no 'test' rows for species 'tiger'" in err and "--manifest" in err
