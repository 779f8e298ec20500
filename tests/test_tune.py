"""A 2-trial DVE sweep: Tune + Optuna in-process trials, tracked in a SQLite-backed MLflow."""

from pathlib import Path

import polars as pl
from conftest import TINY_DVE, TINY_PRESET
from mlflow import MlflowClient

from reid_core import tracking
from reid_core.pipelines.tune import TuneRequest, run_tuning
from reid_core.settings import Settings


def test_two_trial_sweep_leaves_parent_children_and_a_candidate(tiny_synthetic, ray_local):
    settings = Settings.from_env()
    request = TuneRequest(method="dve", species=["tiger"], manifest=tiny_synthetic, num_samples=2,
                          max_concurrent=2, epochs=2, seed=3, preset=TINY_PRESET,
                          overrides=dict(TINY_DVE), bounds={"optim.lr": (3e-4, 3e-3), "losses.lambda_dve": (0.0, 0.5)},
                          dataset="synthetic")
    table = run_tuning(request, settings)

    assert table["species"].to_list() == ["tiger"] and table["model"].to_list() == ["reid-dve-tiger v1"]
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name("reid-dve")
    parents = client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'sweep-tiger'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    children = tracking.child_runs(parent.info.run_id, settings=settings)
    assert children.height == 2 and set(children["status"]) == {"FINISHED"}
    for child in children.iter_rows(named=True):
        # Sampled params inside the overridden bounds; per-epoch metrics with epoch steps.
        assert 3e-4 <= float(child["params.optim.lr"]) <= 3e-3
        assert 0.0 <= float(child["params.losses.lambda_dve"]) <= 0.5
        steps = [m.step for m in client.get_metric_history(child["run_id"], "val.mAP")]
        assert steps and steps == sorted(steps) and max(steps) <= 1
        assert child["tags.species"] == "tiger" and child["tags.method"] == "dve"
        assert child["tags.dataset"] == "synthetic" and len(child["tags.data_version"]) == 12

    version = tracking.get_version_by_alias("reid-dve-tiger", "candidate", settings=settings)
    assert version is not None and int(version.version) == 1
    assert version.run_id in children["run_id"].to_list()
    assert float(version.tags["test.mAP"]) == parent.data.metrics["test.mAP"] or abs(
        float(version.tags["test.mAP"]) - client.get_run(parent.info.run_id).data.metrics["test.mAP"]) < 1e-9
    assert version.tags["git_commit"] == parent.data.tags["git_commit"]
    assert version.tags["manifest"] == str(Path(tiny_synthetic).resolve())

    # The registered model embeds a batch of images: flip-concatenated 2 x 512-d, L2-normalised.
    import torch

    model = tracking.load_model("models:/reid-dve-tiger@candidate", settings=settings)
    embedding = model(torch.randn(3, 3, 48, 48))
    assert embedding.shape == (3, 1024)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(3), atol=1e-5)
    summary = pl.DataFrame(table)
    assert 0.0 <= summary["test_mAP"][0] <= 1.0
