"""The engine end to end: in-process training with resume, and a 2-worker DDP epoch on Ray Train."""

import math
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import TINY_DVE, TINY_PRESET, tiny_dve_flags

from reid_core.engine import checkpoint as ckpt
from reid_core.engine.loop import TrainJob, train
from reid_core.engine.session import LocalSession
from reid_core.lifecycle.restore import restore
from reid_core.pipelines.train import run_training
from reid_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _job(manifest: str, epochs: int) -> TrainJob:
    return TrainJob(manifest=manifest, species="tiger", preset=TINY_PRESET,
                    overrides={**TINY_DVE, "schedule.epochs": epochs})


@pytest.mark.slow
def test_local_training_checkpoints_every_epoch_and_resumes(tiny_synthetic, tmp_path):
    session = LocalSession(tmp_path / "run")
    progress = train(_job(tiny_synthetic, 2), session)
    assert [h["epoch"] for h in progress.history] == [0, 1]
    assert all("val.mAP" in h and 0.0 <= h["val.mAP"] <= 1.0 for h in progress.history)
    assert progress.history[0]["train.warmup_factor"] < 1.0  # the frozen-backbone warm-up epoch

    # A rerun with more epochs continues from the checkpoint instead of starting over.
    resumed = train(_job(tiny_synthetic, 3), LocalSession(tmp_path / "run"))
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert resumed.history[:2] == progress.history

    restored = restore(session.store.latest())
    assert restored.progress.history[-1]["epoch"] == 2 and not restored.model.training


@pytest.mark.slow
@pytest.mark.timeout(700)  # up to 240 s to the first checkpoint, then 400 s for the rerun
def test_killed_run_resumes_from_its_last_checkpoint(tiny_synthetic, tmp_path):
    """Kill `workflows/train.py` after its first checkpoint; the same command finishes the run."""
    home = tmp_path / "home"
    env = {**__import__("os").environ, "REID_HOME": str(home)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sets = tiny_dve_flags()
    command = [sys.executable, str(ROOT / "workflows" / "train.py"), "--species", "tiger", "--manifest",
               tiny_synthetic, "--epochs", "4", "--run-name", "killme", *sets]
    store = ckpt.LocalCheckpoints(home / "checkpoints" / "killme")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while store.latest() is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.kill()
    process.wait()
    first = store.latest()
    assert first is not None, "no checkpoint was written before the deadline"
    killed_at = ckpt.load_progress(first).history[-1]["epoch"]
    assert killed_at < 3, "the run finished before it could be killed"

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    final = ckpt.load_progress(store.latest())
    assert [h["epoch"] for h in final.history] == [0, 1, 2, 3]
    assert "test.mAP" in done.stdout and "reid-dve-tiger v1" in done.stdout


def fingerprinting_worker(config: dict) -> None:
    """``train_worker`` with a session that adds to every report the rank and a digest of the network's
    parameters, at the start (after DDP broadcast rank 0's) and now. Buffers are left out: DDP does not
    average BatchNorm's running statistics."""
    import hashlib

    from reid_core.engine.loop import TrainJob, train
    from reid_core.engine.session import RayTrainSession

    def digest(model) -> str:
        sha = hashlib.sha256()
        for name, parameter in sorted(getattr(model, "module", model).named_parameters()):
            sha.update(name.encode())
            sha.update(parameter.detach().cpu().numpy().tobytes())
        return sha.hexdigest()

    class Fingerprinting(RayTrainSession):
        model, start = None, None

        def wrap(self, network):
            self.model = super().wrap(network)
            self.start = self.start or digest(self.model)
            return self.model

        def report(self, metrics, state, progress):
            fingerprint = {"rank": self.rank, "start_weights": self.start, "weights": digest(self.model)}
            super().report({**metrics, **fingerprint}, state, progress)

    train(TrainJob(**config), Fingerprinting())


FINGERPRINT = ("rank", "start_weights", "weights")


@pytest.mark.slow
def test_two_worker_ddp_epoch_on_ray_train(tiny_synthetic, ray_local, monkeypatch):
    """run_training with 2 workers; every rank's report is collected (the pipeline forwards rank 0's)."""
    import ray.train
    from ray.util.queue import Queue

    from reid_core.pipelines import train as train_pipeline

    reports = Queue()
    forward_rank0 = train_pipeline.epoch_callback

    def every_rank(progress_queue):
        bar = forward_rank0(progress_queue)

        class EveryRank(ray.train.UserCallback):
            def after_report(self, run_context, metrics, checkpoint):
                reports.put([dict(m) for m in metrics])
                plain = [{k: v for k, v in m.items() if k not in FINGERPRINT} for m in metrics]
                bar.after_report(run_context, plain, checkpoint)

        return EveryRank()

    # Defined in this module, the worker is pickled by reference: make Ray ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(train_pipeline, "epoch_callback", every_rank)
    monkeypatch.setattr(train_pipeline, "train_worker", fingerprinting_worker)
    try:
        outcome = run_training(_job(tiny_synthetic, 1), workers=2, run_name="ddp", settings=Settings.from_env())
        per_epoch = [reports.get(timeout=30) for _ in range(reports.qsize())]
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        reports.shutdown()
    history = outcome.progress.history
    assert len(history) == 1 and history[0]["epoch"] == 0 and "val.mAP" in history[0]
    assert len(per_epoch) == 1, per_epoch
    ranks = per_epoch[0]
    # Both ranks trained: each reports its own loss over its own batches...
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    assert all(r["train.images_per_s"] > 0 and math.isfinite(r["train.loss"]) for r in ranks)
    # ... from the same start, and DDP's averaged gradients left both with the same, changed, weights.
    assert ranks[0]["start_weights"] == ranks[1]["start_weights"]
    assert ranks[0]["weights"] == ranks[1]["weights"] != ranks[0]["start_weights"]
    rows = pl.read_parquet(tiny_synthetic)
    assert restore(outcome.checkpoint_dir).progress.meta["num_classes"] == rows.filter(
        pl.col("split") == "train")["entity"].n_unique()
