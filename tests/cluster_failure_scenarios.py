"""Multi-node failure scenarios on one machine, run as a subprocess by tests/test_cluster_failures.py.

    python tests/cluster_failure_scenarios.py ddp-node-loss OUT_DIR MANIFEST

A ``ray.cluster_utils.Cluster`` (a head with no CPUs and three one-CPU nodes) stands in for a cluster;
removing a node (``allow_graceful=False``) is a lost VM or pod. The scenario writes what it observed to
``OUT_DIR/result.json`` for the test to assert on. It runs in its own process because the test session
may hold a ``ray.init`` of its own, and a Cluster owns the whole Ray runtime of its process.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reid_core
sys.path.insert(0, str(Path(__file__).resolve().parent))  # conftest's tiny config


def _cluster(worker_nodes: int):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False,
        # Declare a node dead after ~3 s instead of ~30 s.
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(worker_nodes)]
    cluster.wait_for_nodes()
    return cluster, nodes


def ddp_node_loss(out: Path, manifest: str) -> dict:
    """Two DDP ranks on three one-CPU nodes; once Ray Train has registered epoch 1's checkpoint, the node
    of one rank goes. Ray Train restarts the group on the spare node and the run resumes."""
    import ray
    from conftest import TINY_DVE, TINY_PRESET

    from reid_core.engine import checkpoint as ckpt
    from reid_core.engine.loop import TrainJob
    from reid_core.pipelines.train import run_training
    from reid_core.settings import Settings

    epochs = 8  # enough that the kill lands mid-run on a fast machine too
    os.environ["REID_HOME"] = str(out / "home")
    settings = Settings.from_env()
    settings.ensure_dirs()
    cluster, nodes = _cluster(3)
    os.environ["RAY_ADDRESS"] = cluster.address
    ray.init(address=cluster.address, log_to_driver=False)
    job = TrainJob(manifest=manifest, species="tiger", preset=TINY_PRESET,
                   overrides={**TINY_DVE, "schedule.epochs": epochs, "schedule.warmup_epochs": 0})
    run_dir = settings.ray_storage / "lost-node"
    epoch_of: dict[str, int] = {}   # checkpoint dir -> its epoch, once readable
    appeared: list[str] = []        # checkpoint dirs in the order they appeared (Ray keeps only the last 2)
    state = {"registered_at_kill": None, "dirs_at_kill": None, "removed_node": None, "watch_error": None}
    stop = threading.Event()

    def epoch(name: str) -> int | None:
        if name not in epoch_of:
            try:
                epoch_of[name] = ckpt.load_progress(run_dir / name).history[-1]["epoch"]
            except (OSError, ValueError, KeyError, IndexError):
                return None  # still being written
        return epoch_of[name]

    def registered_epoch() -> int | None:
        """The epoch of the checkpoint Ray Train's controller has registered as the latest (the one a
        restart resumes from), from its snapshot on storage. A checkpoint directory on storage is not yet
        registered: workers write it, the controller registers it once it has every rank's report."""
        try:
            snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
        except (OSError, ValueError):
            return None  # not written yet, or being rewritten
        latest = snapshot.get("latest_checkpoint_result")
        return epoch(latest["checkpoint_dir_name"]) if latest else None

    def train_worker_nodes() -> set[str]:
        """Nodes hosting a live Ray Train worker, from the GCS actor table (no dashboard needed)."""
        from ray._private.state import actors

        return {a["Address"]["NodeID"] for a in actors().values()
                if a.get("State") == "ALIVE" and "TrainWorker" in a.get("ActorClassName", "")}

    def watch():
        try:
            _watch()
        except Exception:  # noqa: BLE001 - reported to the test
            state["watch_error"] = traceback.format_exc()

    def record() -> None:
        for directory in sorted(run_dir.glob("checkpoint_*")):
            if epoch(directory.name) is not None and directory.name not in appeared:
                appeared.append(directory.name)

    def _watch():
        # Once epoch 1's checkpoint is registered (after epoch 1, so that a restart from scratch would show
        # as a new epoch-0 checkpoint), take a node that hosts a training worker.
        while not stop.is_set():
            record()
            registered = registered_epoch()
            ready = state["removed_node"] is None and registered is not None and registered >= 1
            victims = [n for n in nodes if n.node_id in train_worker_nodes()] if ready else []
            if victims:
                state["dirs_at_kill"] = sorted(d.name for d in run_dir.glob("checkpoint_*"))
                state["registered_at_kill"] = registered
                state["removed_node"] = victims[0].node_id
                cluster.remove_node(victims[0], allow_graceful=False)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result: dict = {}
    try:
        outcome = run_training(job, workers=2, run_name="lost-node", settings=settings, max_failures=2)
        result["history_epochs"] = [h["epoch"] for h in outcome.progress.history]
        result["error"] = None
    except Exception:  # noqa: BLE001 - reported to the test
        result["error"] = traceback.format_exc()
    finally:
        stop.set()
        watcher.join(timeout=10)
        record()
    before = set(state["dirs_at_kill"] or [])
    result |= {
        "registered_at_kill": state["registered_at_kill"],
        "removed_node": state["removed_node"],
        "watch_error": state["watch_error"],
        "epochs_before_kill": [epoch_of[name] for name in appeared if name in before],
        "epochs_after_kill": [epoch_of[name] for name in appeared if name not in before],
        "alive_nodes": sum(1 for n in ray.nodes() if n["Alive"]),
        "epochs": epochs,
    }
    ray.shutdown()
    cluster.shutdown()
    return result


SCENARIOS = {"ddp-node-loss": ddp_node_loss}

if __name__ == "__main__":
    name, out, *rest = sys.argv[1:]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    outcome = SCENARIOS[name](out_dir, *rest)
    outcome["seconds"] = round(time.monotonic() - started, 1)
    (out_dir / "result.json").write_text(json.dumps(outcome, indent=1))
    print(json.dumps(outcome, indent=1))
