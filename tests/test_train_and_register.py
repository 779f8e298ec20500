"""lifecycle.train_and_register as a notebook calls it: no Ray, no command line, its own stores."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import TINY_DVE, TINY_PRESET
from lifecycle_support import direct_metrics
from mlflow import MlflowClient

from reid_core import tracking
from reid_core.engine.loop import TrainJob
from reid_core.lifecycle.train_and_register import in_process, train_and_register
from reid_core.settings import Settings


@pytest.mark.slow
def test_a_job_is_trained_logged_and_registered_in_process(tiny_synthetic, tmp_path):
    settings = Settings.from_env({"REID_HOME": str(tmp_path / "home")})
    job = TrainJob(manifest=tiny_synthetic, species="tiger", preset=TINY_PRESET, use_masked=False,
                   overrides={**TINY_DVE, "schedule.epochs": 1, "schedule.warmup_epochs": 0})
    registered = train_and_register(job, settings=settings, dataset="synthetic")

    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(registered.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "dve-tiger"
    assert client.get_experiment(run.info.experiment_id).name == registered.experiment == "reid-dve"
    rows = pl.read_parquet(tiny_synthetic).filter(pl.col("species") == "tiger")
    assert run.data.tags["run_kind"] == "train" and run.data.tags["data_version"] == tracking.data_version(rows)
    assert run.data.params["preset"] == "cpu" and run.data.params["input.size"] == "48"
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["synthetic-tiger"]
    history = client.get_metric_history(registered.run_id, "val.mAP")
    assert [m.step for m in history] == [0]
    # The logged test metrics are the registered model's, and an independent evaluation's.
    assert run.data.metrics["test.mAP"] == pytest.approx(registered.published.metrics["test.mAP"])
    independent = direct_metrics(registered.restored, tiny_synthetic, "tiger")
    assert registered.published.metrics["test.mAP"] == pytest.approx(independent["mAP"], abs=1e-6)

    version = tracking.get_version_by_alias("reid-dve-tiger", "candidate", settings=settings)
    assert (str(version.version), version.run_id) == ("1", registered.run_id)
    assert registered.row("tiger")["model"] == "reid-dve-tiger v1"
    assert (settings.checkpoints_dir / "dve-tiger").is_dir()  # the default trainer's checkpoints

    # Any trainer can be passed in; the same run name resumes its checkpoints (one epoch, trained already).
    names = []

    def trainer(job, run_name):
        names.append(run_name)
        return in_process(settings)(job, run_name)

    again = train_and_register(job, settings=settings, run_name="dve-tiger", trainer=trainer, dataset="synthetic")
    assert names == ["dve-tiger"] and again.published.version == "2"
    assert len(again.restored.progress.history) == 1
