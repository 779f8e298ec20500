"""What survives a lost node, on a multi-node Ray cluster on one machine (ray.cluster_utils.Cluster in a
subprocess; tests/cluster_failure_scenarios.py): DDP training, a Tune trial, segmentation, and Ray
storage on S3 (moto) instead of a shared file system. A killed sweep driver: tests/test_tune.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).resolve().parent / "cluster_failure_scenarios.py"


def run_scenario(name: str, out: Path, *args: str, timeout: int = 900, env: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")} | (env or {})
    done = subprocess.run([sys.executable, str(SCENARIOS), name, str(out), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(960)  # run_scenario waits up to 900 s
def test_a_lost_node_mid_ddp_training_resumes_from_the_last_checkpoint(tiny_synthetic, tmp_path):
    """Two DDP ranks on three one-CPU nodes; once Ray Train has registered epoch 1's checkpoint, the node
    of one rank is removed. Ray Train restarts the group on the spare node, the run resumes from the last
    registered checkpoint (not from scratch, not from an older one) and finishes without error."""
    result = run_scenario("ddp-node-loss", tmp_path / "ddp", tiny_synthetic)
    assert result["error"] is None and result["watch_error"] is None, result
    assert result["removed_node"] is not None and result["alive_nodes"] == 3  # the head and two workers
    epochs = result["epochs"]
    assert result["history_epochs"] == list(range(epochs))
    registered = result["registered_at_kill"]
    before, after = result["epochs_before_kill"], result["epochs_after_kill"]
    assert registered is not None and 1 <= registered < epochs - 1, f"the run ended before the kill: {result}"
    # The first checkpoint after the restart is the epoch after the one resumed from. Checkpoints that
    # workers wrote but the controller had not registered at the kill are redone, as Ray Train intends.
    assert after, f"no checkpoint after the kill: {result}"
    resumed_from = min(after) - 1
    assert registered <= resumed_from <= max(before), f"did not resume from the last registered: {result}"
    assert sorted(set(before + after)) == list(range(epochs)), f"an epoch was skipped: {result}"


@pytest.fixture(scope="module")
def shared_cluster(tiny_synthetic, s3_server, tmp_path_factory):
    """One cluster for the scenarios below (s3-train-resume, tune-trial-loss, segment-node-loss), run
    one after the other in one subprocess: starting a cluster costs 20-30 s here."""
    import boto3

    bucket = f"reid-ray-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    # moto's dummy credentials, in the environment every node (and so every worker) starts with.
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "REID_S3_ENDPOINT_URL": s3_server}
    out = tmp_path_factory.mktemp("shared-cluster")
    result = run_scenario("shared-cluster", out, tiny_synthetic, f"s3://{bucket}", env=env)
    return result | {"bucket": bucket, "env": env}


@pytest.mark.slow
def test_a_lost_trial_worker_is_retried_from_its_checkpoint_and_the_sweep_finishes(shared_cluster):
    """A 2-trial sweep; the node of a trial past ASHA's rung is removed. Tune restarts that trial (its
    failure config) from its last checkpoint, both trials finish and the best model is registered."""
    result = shared_cluster["tune-trial-loss"]
    assert result["error"] is None and result["watch_error"] is None, result
    assert result["removed_node"] is not None, f"no trial was running past epoch 3: {result}"
    assert result["models"] == ["reid-dve-tiger v1"]  # the sweep finished and registered its model
    trials, victim, epochs = result["trials"], result["killed_trial"], result["epochs"]
    assert len(trials) == 2 and all(t["status"] == "TERMINATED" and t["has_result"] for t in trials.values())
    assert trials[victim]["num_failures"] >= 1
    victim_run = result["child_runs"][victim]
    assert (victim_run["status"], victim_run["num_failures"]) == ("FINISHED", str(trials[victim]["num_failures"]))
    assert len(result["child_runs"]) == 2  # the retry kept its MLflow run
    # Every epoch's validation reached the trial's MLflow run: those of the first process up to the kill
    # and those of the restarted one after it.
    assert victim_run["val_map_epochs"] == list(range(epochs)), victim_run
    # The victim's reports in Tune's result.json, by process. The restarted one went on from the epoch
    # after a checkpoint it had written (not from scratch) to the last epoch. The first process's lines
    # are only a prefix: Tune restores result.json from its last sync to storage when it restarts a
    # trial, so the lines of the epochs just before the kill can be missing there (MLflow has them).
    reports = trials[victim]["reports"]
    first_pid = reports[0][1]
    before = [epoch for epoch, pid in reports if pid == first_pid]
    after = [epoch for epoch, pid in reports if pid != first_pid]
    assert before == list(range(len(before))), reports
    assert after and 1 <= after[0] <= result["killed_at_epoch"] + 1 and after == list(range(after[0], epochs)), reports


@pytest.mark.slow
def test_a_node_lost_mid_segmentation_leaves_every_row_written_once(shared_cluster):
    """Two segmentation actors on 40 images; the node of one is removed after a few batches."""
    result = shared_cluster["segment-node-loss"]
    assert result["error"] is None and result["watch_error"] is None, result
    assert result["removed_node"] is not None, f"no segmentation actor to take: {result}"
    # Ray Data restarted the lost actor and retried its batch: the run finished every row itself.
    assert result["first"] == {"processed": 40, "failed": 0, "statuses": {"ok": 40}}, result["first"]
    assert result["left_after_first"] == 0 and result["rerun"] == {"skipped": 40, "processed": 0, "failed": 0}
    # Each row once in the manifest, in its order; a mask and a masked image per row, nothing else,
    # every one of them a whole image; one journal record per row, compacted into one file.
    assert result["output_ids"] == result["input_ids"] and result["statuses"] == ["ok"]
    assert result["output_files"] == result["expected_files"] and len(result["output_files"]) == 80
    assert result["undecodable"] == [] and result["temporary_files"] == []
    assert (result["journal_files"], result["journal_records"]) == (1, 40)


@pytest.mark.slow
def test_ray_storage_on_s3_keeps_checkpoints_in_the_bucket_and_resumes_from_there(shared_cluster, monkeypatch,
                                                                                   tmp_path):
    """REID_RAY_STORAGE=s3://...: a one-worker Ray Train run checkpoints into the moto bucket; the rerun
    with one more epoch resumes from there."""
    from reid_core.lifecycle.restore import latest_checkpoint, restore

    result = shared_cluster["s3-train-resume"]
    assert result["error"] is None, result["error"]
    prefix = f"s3://{shared_cluster['bucket']}/ray/on-s3/"
    assert result["ray_storage"] == f"s3://{shared_cluster['bucket']}/ray" and not result["local_ray_storage_used"]
    first = {key.split("/")[-2] for key in result["keys_after_first"] if key.endswith("/progress.json")}
    assert len(first) == 1 and f"{prefix}checkpoint_manager_snapshot.json" in result["keys_after_first"]
    assert all(key.startswith(prefix) for key in result["keys_after_second"])
    # The rerun with one more epoch resumed from the checkpoint on S3: epoch 0 is the first run's, as it was.
    assert [h["epoch"] for h in result["second_history"]] == [0, 1]
    assert result["second_history"][0] == result["first_history"][0]

    # The newest checkpoint read back from the bucket (pyarrow, not pathlib), as a sweep's best DDP trial is.
    for key, value in shared_cluster["env"].items():
        monkeypatch.setenv(key, value)
    local = latest_checkpoint(prefix.rstrip("/"), download_root=tmp_path)
    assert local.parent == tmp_path and local.name not in first
    assert [h["epoch"] for h in restore(local).progress.history] == [0, 1]
