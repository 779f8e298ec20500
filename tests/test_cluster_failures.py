"""What survives a lost node, on a multi-node Ray cluster on one machine (ray.cluster_utils.Cluster in a
subprocess; tests/cluster_failure_scenarios.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).resolve().parent / "cluster_failure_scenarios.py"


def run_scenario(name: str, out: Path, *args: str, timeout: int = 900) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    done = subprocess.run([sys.executable, str(SCENARIOS), name, str(out), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_a_lost_node_mid_ddp_training_resumes_from_the_last_checkpoint(tiny_synthetic, tmp_path):
    """Two DDP ranks on three one-CPU nodes; after epoch 1's checkpoint is committed the node of one rank
    is removed. Ray Train restarts the group on the spare node, the run resumes from the last committed
    checkpoint (not from scratch), repeats at most one epoch and finishes without error."""
    result = run_scenario("ddp-node-loss", tmp_path / "ddp", tiny_synthetic)
    assert result["error"] is None and result["watch_error"] is None, result
    assert result["removed_node"] is not None and result["alive_nodes"] == 3  # the head and two workers
    epochs = result["epochs"]
    assert result["history_epochs"] == list(range(epochs))
    committed_at_kill = result["killed_after_epoch"]
    after = result["epochs_after_kill"]
    assert committed_at_kill is not None and 1 <= committed_at_kill < epochs - 1, "the run ended before the kill"
    # A restart from scratch would write an epoch-0 checkpoint again; resuming from the last committed one
    # continues at its epoch + 1 (or redoes that epoch if its commit had not landed yet).
    assert after and min(after) >= committed_at_kill, f"restarted from scratch: {result}"
    every = result["epochs_before_kill"] + after
    assert sorted(set(every)) == list(range(epochs))
    assert len(every) - len(set(every)) <= 1, f"more than one epoch repeated: {every}"
