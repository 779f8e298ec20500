"""The engine end to end: in-process training with resume, and a 2-worker DDP epoch on Ray Train."""

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


@pytest.mark.slow
def test_two_worker_ddp_epoch_on_ray_train(tiny_synthetic, ray_local):
    outcome = run_training(_job(tiny_synthetic, 1), workers=2, run_name="ddp", settings=Settings.from_env())
    history = outcome.progress.history
    assert len(history) == 1 and history[0]["epoch"] == 0
    # Both ranks trained: the rank-0 throughput figure counts the images of all workers.
    assert history[0]["train.images_per_s"] > 0 and "val.mAP" in history[0]
    rows = pl.read_parquet(tiny_synthetic)
    assert restore(outcome.checkpoint_dir).progress.meta["num_classes"] == rows.filter(
        pl.col("split") == "train")["entity"].n_unique()
