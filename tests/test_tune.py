"""A 2-trial DVE sweep: Tune + Optuna in-process trials, tracked in a SQLite-backed MLflow; a killed
sweep driver continued with --resume."""

import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import TINY_DVE, TINY_PRESET, kill_session, tiny_dve_flags
from metric_support import reference_test_map
from mlflow import MlflowClient

from reid_core import tracking
from reid_core.cli.tune import main as tune_main
from reid_core.data import manifest
from reid_core.lifecycle import sweep_record
from reid_core.lifecycle.model_eval import eval_transform_for
from reid_core.pipelines.tune import TuneRequest, run_tuning
from reid_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


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
    # The reported test mAP is the registered model's, ranked here without reid_core's evaluation code.
    transform = eval_transform_for("models:/reid-dve-tiger@candidate", settings)
    expected = reference_test_map(model, manifest.read(tiny_synthetic), "tiger", transform)
    summary = pl.DataFrame(table)
    assert summary["test_mAP"][0] == pytest.approx(expected, abs=1e-4)
    assert float(version.tags["test.mAP"]) == pytest.approx(expected, abs=1e-4)


def test_resume_without_an_earlier_sweep_names_the_record_and_the_flag(tiny_synthetic):
    settings = Settings.from_env()
    request = TuneRequest(method="dve", species=["tiger"], manifest=tiny_synthetic, resume=True)
    record = sweep_record.record_uri(settings, "dve", "tiger")
    with pytest.raises(ValueError, match="run without --resume") as raised:
        run_tuning(request, settings)  # before Ray starts
    assert record in str(raised.value) and "does not exist" in str(raised.value)


def _trial_statuses(experiment_path: str) -> dict[str, str]:
    """trial id -> status in Tune's latest experiment snapshot (what a restore starts from)."""
    states = sorted(glob.glob(os.path.join(experiment_path, "experiment_state-*.json")))
    if not states:
        return {}
    try:
        trials = json.loads(Path(states[-1]).read_text())["trial_data"]
    except (OSError, ValueError, KeyError):
        return {}  # being rewritten
    return {state["trial_id"]: state["status"] for state in (json.loads(t[0]) for t in trials)}


def _trial_runs(settings: Settings, parent_run_id: str) -> dict[str, dict]:
    """trial id -> its child run: id, status, end time and the steps of its val.mAP history."""
    client = MlflowClient(settings.tracking_uri)
    return {row["tags.trial_id"]: {"run_id": row["run_id"], "status": row["status"], "end_time": row["end_time"],
                                   "steps": [m.step for m in client.get_metric_history(row["run_id"], "val.mAP")]}
            for row in tracking.child_runs(parent_run_id, settings=settings).iter_rows(named=True)}


@pytest.mark.slow
def test_a_killed_sweep_driver_is_continued_with_resume(tiny_synthetic, ray_local):
    """Kill `workflows/tune_dve.py` (and its local Ray) once Tune has recorded the first of two trials
    as finished; `--resume` continues the same parent run, does not rerun the finished trial, finishes
    the other and registers the best model."""
    settings = Settings.from_env()
    args = ["--species", "tiger", "--manifest", tiny_synthetic, "--num-samples", "2", "--max-concurrent", "1",
            "--epochs", "2", "--seed", "3", *tiny_dve_flags()]
    # Tune snapshots its experiment every >= 10 s by default: every second, so the kill lands sooner.
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    process = subprocess.Popen([sys.executable, str(ROOT / "workflows" / "tune_dve.py"), *args], env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, record, statuses = time.monotonic() + 240, None, {}
    while time.monotonic() < deadline and process.poll() is None:
        record = record or sweep_record.load(settings, "dve", "tiger")
        statuses = _trial_statuses(record.experiment_path) if record else {}
        if "TERMINATED" in statuses.values():
            break
        time.sleep(0.2)
    kill_session(process)
    assert record is not None and "TERMINATED" in statuses.values(), f"no trial finished before the deadline: {statuses}"
    statuses = _trial_statuses(record.experiment_path)  # what the resume sees
    finished = [trial for trial, status in statuses.items() if status == "TERMINATED"]
    assert len(finished) == 1, f"the sweep ended before it could be killed: {statuses}"
    before = _trial_runs(settings, record.parent_run_id)
    assert before[finished[0]]["status"] == "FINISHED" and not sweep_record.load(settings, "dve", "tiger").finished

    # A resume must be the same sweep: a changed option is refused before anything runs.
    with pytest.raises(ValueError, match=r"epochs \(was 2, now 3\)"):
        tune_main("dve", [*args, "--epochs", "3", "--resume"])
    assert tune_main("dve", [*args, "--resume"]) == 0

    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name("reid-dve")
    parents = client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'sweep-tiger'")
    assert [p.info.run_id for p in parents] == [record.parent_run_id] and parents[0].info.status == "FINISHED"
    after = _trial_runs(settings, record.parent_run_id)
    assert len(after) == 2 and {run["status"] for run in after.values()} == {"FINISHED"}
    assert after[finished[0]] == before[finished[0]]  # the finished trial: same run, not a step more
    version = tracking.get_version_by_alias("reid-dve-tiger", "candidate", settings=settings)
    assert version is not None and int(version.version) == 1
    assert version.run_id in {run["run_id"] for run in after.values()}
    final = sweep_record.load(settings, "dve", "tiger")
    assert final.finished and final.result["version"] == "1" and final.parent_run_id == record.parent_run_id
