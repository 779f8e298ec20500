"""Multi-node failure scenarios on one machine, run as a subprocess by tests/test_cluster_failures.py.

    python tests/cluster_failure_scenarios.py ddp-node-loss OUT_DIR MANIFEST
    python tests/cluster_failure_scenarios.py shared-cluster OUT_DIR MANIFEST S3_URI

A ``ray.cluster_utils.Cluster`` (a head with no CPUs and three one-CPU nodes) stands in for a cluster;
removing a node (``allow_graceful=False``) is a lost VM or pod. The scenario writes what it observed to
``OUT_DIR/result.json`` for the test to assert on. It runs in its own process because the test session
may hold a ``ray.init`` of its own, and a Cluster owns the whole Ray runtime of its process.
``shared-cluster`` runs several scenarios one after the other on one cluster (a cluster takes 20-30 s
to start here), putting a node back after each loss; each scenario's outcome is reported under its name.
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


def _actor_nodes(class_fragment: str) -> dict[str, str]:
    """Node id by pid of the live actors whose class name contains ``class_fragment``, from the GCS
    actor table (no dashboard needed)."""
    from ray._private.state import actors

    return {a["Pid"]: a["Address"]["NodeID"] for a in actors().values()
            if a.get("State") == "ALIVE" and class_fragment in a.get("ActorClassName", "")}


class _Watcher:
    """Calls ``step()`` every 0.2 s in a daemon thread until it returns True or ``stop()``; an exception
    ends the watch and is kept (as a traceback) for the test."""

    def __init__(self, step) -> None:
        self.step, self.error = step, None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.done.is_set() and not self.step():
                time.sleep(0.2)
        except Exception:  # noqa: BLE001 - reported to the test
            self.error = traceback.format_exc()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=10)


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
    run_dir = Path(settings.ray_storage) / "lost-node"
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
        return set(_actor_nodes("TrainWorker").values())

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


# --- shared-cluster: scenarios that share one cluster ------------------------------------------------------
def tune_trial_loss(cluster, nodes: list, out: Path, manifest: str) -> dict:
    """Two in-process trials on two of three one-CPU nodes; once one trial has passed ASHA's rung (so no
    scheduler stops it) the node hosting it goes. Tune restarts it on the spare node from its last
    checkpoint (its failure config) and the sweep registers its model."""
    from conftest import TINY_DVE, TINY_PRESET
    from ray.tune import ExperimentAnalysis

    from reid_core import tracking
    from reid_core.lifecycle import sweep_record
    from reid_core.pipelines.tune import TuneRequest, run_tuning
    from reid_core.settings import Settings

    settings = Settings.from_env()
    # ASHA's only rung is at 2 (grace 8 // 3, reduction 4): a trial past epoch 2 runs to the end, and
    # epochs 2-6 (under a second each here) leave the watcher time to see one running.
    epochs = 8
    request = TuneRequest(method="dve", species=["tiger"], manifest=manifest, num_samples=2, max_concurrent=2,
                          epochs=epochs, seed=3, preset=TINY_PRESET, dataset="synthetic", max_failures=2,
                          overrides={**TINY_DVE, "schedule.warmup_epochs": 0})
    state: dict = {"killed_trial": None, "killed_at_epoch": None, "removed_node": None}

    def trial_of(pid: int) -> str:
        """The trial dir name of a trial actor: Tune moves its working directory to
        ``.../working_dirs/<trial dir name>`` (all nodes are on this machine, so /proc shows it)."""
        return Path(os.readlink(f"/proc/{pid}/cwd")).name

    def last_checkpoint(trial_dir: Path) -> int:
        """The newest checkpoint a trial has written (the trial writes it itself, before Tune's driver
        has its result; result.json, which the driver writes, is buffered and lags)."""
        return max((int(p.name.rsplit("_", 1)[1]) for p in trial_dir.glob("checkpoint_*")), default=-1)

    found: list = []  # the sweep's record, once written

    def kill_a_trial() -> bool:
        found[:] = found or [r for r in [sweep_record.load(settings, "dve", "tiger")] if r is not None]
        if not found:
            return False
        for pid, node_id in _actor_nodes("ImplicitFunc").items():  # the actor class of a function trainable
            try:
                trial_dir = Path(found[0].experiment_path) / trial_of(pid)
            except OSError:
                continue  # the process is gone
            newest = last_checkpoint(trial_dir)
            # The trial cannot run more than one result ahead of the driver: with checkpoint 3 written,
            # the driver has taken result 2, so it let the trial through ASHA's rung (epoch 1) and
            # holds the checkpoint of epoch 1 at least.
            if 3 <= newest < epochs - 2:
                victim = next(n for n in nodes if n.node_id == node_id)
                state.update(killed_trial=trial_dir.name.split("_")[2], killed_at_epoch=newest,
                             removed_node=node_id)
                cluster.remove_node(victim, allow_graceful=False)
                return True
        return False

    watcher = _Watcher(kill_a_trial)
    outcome: dict = {"epochs": epochs}
    try:
        table = run_tuning(request, settings)
        outcome |= {"error": None, "models": table["model"].to_list()}
    except Exception:  # noqa: BLE001 - reported to the test
        outcome["error"] = traceback.format_exc()
    finally:
        watcher.stop()
    record = sweep_record.load(settings, "dve", "tiger")
    trials = ExperimentAnalysis(record.experiment_path).trials if record else []
    children = tracking.child_runs(record.parent_run_id, settings=settings) if record else None
    runs = {row["tags.trial_id"]: row for row in children.iter_rows(named=True)} if children is not None else {}
    client = tracking.configure(settings)
    outcome |= state | {
        "watch_error": watcher.error,
        "trials": {t.trial_id: {"status": t.status, "num_failures": t.num_failures,
                                "has_result": "val.mAP" in (t.last_result or {}),
                                "reports": [[r["epoch"], r["pid"]] for r in map(json.loads, Path(
                                    t.path, "result.json").read_text().splitlines())]}
                   for t in trials},
        "child_runs": {trial_id: {"status": row["status"], "num_failures": row.get("tags.num_failures"),
                                  "val_map_epochs": sorted({m.step for m in client.get_metric_history(
                                      row["run_id"], "val.mAP")})}
                       for trial_id, row in runs.items()},
    }
    return outcome


class SlowReference:
    """The reference masks, slowly, logging every call: a segmentation that a node loss lands in."""

    def __init__(self, delay: float, log: str) -> None:
        from reid_core.segmentation.reference import ReferenceSegmenter

        self.reference, self.delay, self.log = ReferenceSegmenter(), delay, log

    def segment(self, image, row=None):
        with open(self.log, "a") as handle:
            handle.write(row["image_id"] + "\n")
        time.sleep(self.delay)
        return self.reference.segment(image, row)


def slow_reference(delay: float = 0.1, log: str = "calls.txt") -> SlowReference:
    return SlowReference(delay, log)


def segment_node_loss(cluster, nodes: list, out: Path, manifest: str) -> dict:
    """Two segmentation actors on two of three nodes; after a few batches the node of one goes. Ray
    Data restarts the actor on the spare node and retries its batch; a rerun finds every row done."""
    import polars as pl
    from PIL import Image

    from reid_core.pipelines.segment import SegmentJob, make_plan, run

    output, log = out / "segmented", out / "segment-calls.txt"
    job = SegmentJob(manifest=manifest, output=str(output), method="cluster_failure_scenarios:slow_reference",
                     options={"delay": 0.2, "log": str(log)}, actors=2, batch_size=2)
    state: dict = {"removed_node": None, "journal_parts_at_kill": None}

    def remove_a_segmenter_node() -> bool:
        parts = list((output / "_journal").glob("part-*.parquet"))
        hosts = set(_actor_nodes("MapWorker").values())
        victims = [n for n in nodes if n.node_id in hosts]
        if len(parts) >= 3 and victims:
            state.update(removed_node=victims[0].node_id, journal_parts_at_kill=len(parts))
            cluster.remove_node(victims[0], allow_graceful=False)
            return True
        return False

    watcher = _Watcher(remove_a_segmenter_node)
    outcome: dict = {}
    try:
        first = run(job)
        outcome |= {"error": None, "first": {"processed": first.processed, "failed": first.failed,
                                             "statuses": first.statuses}}
    except Exception:  # noqa: BLE001 - reported to the test
        outcome["error"] = traceback.format_exc()
    finally:
        watcher.stop()
    left = make_plan(job, clean=False)
    outcome["left_after_first"] = len(left.todo)
    rerun = run(job)  # finishes whatever the first run left (nothing, when Ray Data recovered)
    final = pl.read_parquet(rerun.manifest_out)

    def decodes(path: str) -> bool:
        try:
            with Image.open(path) as image:
                image.load()
            return True
        except OSError:
            return False

    files = sorted(str(p) for p in output.rglob("*") if p.is_file() and "_journal" not in p.parts)
    calls = log.read_text().splitlines()
    outcome |= state | {
        "watch_error": watcher.error,
        "rerun": {"skipped": rerun.skipped, "processed": rerun.processed, "failed": rerun.failed},
        "input_ids": pl.read_parquet(manifest)["image_id"].to_list(),
        "output_ids": final["image_id"].to_list(),
        "statuses": sorted(set(final["seg_status"].to_list())),
        "output_files": [f for f in files if f != rerun.manifest_out],
        "expected_files": sorted(final["mask_uri"].to_list() + final["masked_uri"].to_list()),
        "undecodable": [f for f in files if f.endswith(".png") and not decodes(f)],
        "temporary_files": [f for f in files if ".tmp-" in f],
        "journal_files": len(list((output / "_journal").iterdir())),
        "journal_records": pl.read_parquet(output / "_journal").height,
        "segmented_twice": sorted({i for i in calls if calls.count(i) > 1}),
    }
    return outcome


def s3_train_resume(cluster, nodes: list, out: Path, manifest: str, s3_uri: str) -> dict:
    """A Ray Train run (one worker) with its Ray storage on S3 (REID_RAY_STORAGE=s3://...): one epoch,
    then the same run name with two epochs, which resumes from the checkpoint on S3."""
    from conftest import TINY_DVE, TINY_PRESET

    from reid_core.data import files as rio
    from reid_core.engine.loop import TrainJob
    from reid_core.pipelines.train import run_training
    from reid_core.settings import Settings

    settings = Settings.from_env({**os.environ, "REID_RAY_STORAGE": f"{s3_uri}/ray"})

    def job(epochs: int) -> TrainJob:
        # A narrow ResNet-18: a 13 MB checkpoint instead of 183 MB, which moto moves several times a run.
        return TrainJob(manifest=manifest, species="tiger", preset=TINY_PRESET,
                        overrides={**TINY_DVE, "backbone.kwargs": {"channels": [16, 32, 64, 128]},
                                   "schedule.epochs": epochs, "schedule.warmup_epochs": 0})

    outcome: dict = {"ray_storage": settings.ray_storage}
    try:
        started = time.monotonic()
        first = run_training(job(1), workers=1, run_name="on-s3", settings=settings, show_progress=False)
        keys_after_first = rio.list_files(f"{settings.ray_storage}/on-s3")
        between = time.monotonic()
        second = run_training(job(2), workers=1, run_name="on-s3", settings=settings, show_progress=False)
        outcome |= {
            "error": None,
            "fit_seconds": [round(between - started, 1), round(time.monotonic() - between, 1)],
            "first_history": first.progress.history,
            "second_history": second.progress.history,
            "checkpoint_dirs": [str(first.checkpoint_dir), str(second.checkpoint_dir)],
            "keys_after_first": keys_after_first,
            "keys_after_second": rio.list_files(f"{settings.ray_storage}/on-s3"),
        }
    except Exception:  # noqa: BLE001 - reported to the test
        outcome["error"] = traceback.format_exc()
    outcome["local_ray_storage_used"] = (Path(settings.home) / "ray" / "on-s3").exists()
    return outcome


def shared_cluster(out: Path, manifest: str, s3_uri: str) -> dict:
    import ray

    from reid_core.settings import Settings

    os.environ["REID_HOME"] = str(out / "home")
    Settings.from_env().ensure_dirs()
    cluster, nodes = _cluster(3)
    os.environ["RAY_ADDRESS"] = cluster.address
    ray.init(address=cluster.address, log_to_driver=False)
    outcome: dict = {}
    scenarios = [("s3-train-resume", lambda: s3_train_resume(cluster, nodes, out, manifest, s3_uri)),
                 ("tune-trial-loss", lambda: tune_trial_loss(cluster, nodes, out, manifest)),
                 ("segment-node-loss", lambda: segment_node_loss(cluster, nodes, out, manifest))]
    for name, scenario in scenarios:
        started = time.monotonic()
        try:
            outcome[name] = scenario()
        except Exception:  # noqa: BLE001 - reported to the test; the next scenario still runs
            outcome[name] = {"error": traceback.format_exc()}
        outcome[name]["seconds"] = round(time.monotonic() - started, 1)
        if name == scenarios[-1][0]:
            break
        # Put a node back for the next scenario: three live one-CPU nodes again.
        for lost in [n for n in nodes if n not in cluster.worker_nodes]:
            nodes.remove(lost)
            nodes.append(cluster.add_node(num_cpus=1))
        cluster.wait_for_nodes()
    ray.shutdown()
    cluster.shutdown()
    return outcome


SCENARIOS = {"ddp-node-loss": ddp_node_loss, "shared-cluster": shared_cluster}

if __name__ == "__main__":
    name, out, *rest = sys.argv[1:]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    outcome = SCENARIOS[name](out_dir, *rest)
    outcome["seconds"] = round(time.monotonic() - started, 1)
    (out_dir / "result.json").write_text(json.dumps(outcome, indent=1))
    print(json.dumps(outcome, indent=1))
