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
