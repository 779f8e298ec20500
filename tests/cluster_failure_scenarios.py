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
    """Two DDP ranks on three one-CPU nodes; once epoch 1's checkpoint is committed, the node of one rank
    goes. Ray Train restarts the group on the spare node and the run resumes."""
    import ray
    from conftest import TINY_DVE, TINY_PRESET

    from reid_core.engine import checkpoint as ckpt
    from reid_core.engine.loop import TrainJob
    from reid_core.pipelines.train import run_training
    from reid_core.settings import Settings

    epochs = 8  # enough that the kill, 3 s after epoch 1's checkpoint, lands mid-run on a fast machine too
    os.environ["REID_HOME"] = str(out / "home")
    settings = Settings.from_env()
    settings.ensure_dirs()
    cluster, nodes = _cluster(3)
    os.environ["RAY_ADDRESS"] = cluster.address
    ray.init(address=cluster.address, log_to_driver=False)
    job = TrainJob(manifest=manifest, species="tiger", preset=TINY_PRESET,
                   overrides={**TINY_DVE, "schedule.epochs": epochs, "schedule.warmup_epochs": 0})
    run_dir = settings.ray_storage / "lost-node"
    seen: dict[str, int] = {}       # checkpoint dir -> its epoch, in the order they appeared
    order: list[tuple[float, str, int]] = []
    state = {"killed_at": None, "killed_after_epoch": None, "removed_node": None, "watch_error": None}
    stop = threading.Event()

    def committed() -> list[tuple[str, int]]:
        found = []
        for directory in sorted(run_dir.glob("checkpoint_*")):
            try:
                found.append((directory.name, ckpt.load_progress(directory).history[-1]["epoch"]))
            except (OSError, ValueError, KeyError, IndexError):
                pass  # still being written
        return found

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
        for name, epoch in committed():
            if name not in seen:
                seen[name] = epoch
                order.append((time.monotonic(), name, epoch))

    def _watch():
        while not stop.is_set():
            record()
            if state["killed_at"] is None and seen and max(seen.values()) >= 1:
                # Epoch 1's checkpoint is on storage (after epoch 1, so that a restart from scratch
                # would show as a new epoch-0 checkpoint); give every rank time to return from
                # report() (the commit), then take a node that hosts a training worker. Checkpoints
                # written meanwhile (a fast machine runs epochs in that time) count as before the kill.
                time.sleep(3)
                record()
                hosts = train_worker_nodes()
                victims = [n for n in nodes if n.node_id in hosts]
                if victims:
                    state["killed_after_epoch"] = max(seen.values())
                    state["removed_node"] = victims[0].node_id
                    cluster.remove_node(victims[0], allow_graceful=False)
                    state["killed_at"] = time.monotonic()
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
    killed_at = state["killed_at"]
    result |= {
        "killed_after_epoch": state["killed_after_epoch"],
        "removed_node": state["removed_node"],
        "watch_error": state["watch_error"],
        "epochs_before_kill": [e for t, _, e in order if killed_at is None or t < killed_at],
        "epochs_after_kill": [e for t, _, e in order if killed_at is not None and t >= killed_at],
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
