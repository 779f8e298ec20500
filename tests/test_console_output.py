"""What a person sees on the console: a progress line per stage and a summary, Ray's own output only
with --verbose."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import tiny_dve_flags
from mlflow import MlflowClient

from reid_core import tracking
from reid_core.data import manifest
from reid_core.pipelines.console import Progress
from reid_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_LINE = "Checkpoint successfully created"
QUIET_MAX_LINES = 25
WORKFLOW = ROOT / "workflows" / "tune_dve.py"


def test_a_stage_prints_a_bounded_number_of_lines_off_a_terminal():
    out = io.StringIO()
    progress = Progress("train dve tiger", 80, "epochs", stream=out, tty=False)
    for epoch in range(80):
        progress.update_to(epoch + 1, loss=1.0 / (epoch + 1))
    progress.close("80 epochs, best val.mAP 0.5 at epoch 70")
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # every tenth of the stage, then the summary
    assert lines[0].startswith("train dve tiger: 8/80 epochs (10%) [") and "loss 0.125" in lines[0]
    assert lines[-2].startswith("train dve tiger: 80/80 epochs (100%)")
    assert lines[-1].startswith("train dve tiger: 80 epochs, best val.mAP 0.5 at epoch 70 [")


def _sweep(argv: list[str], home: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    return subprocess.Popen([sys.executable, str(WORKFLOW), *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**env, "REID_HOME": str(home)})


@pytest.mark.slow
def test_a_sweep_is_quiet_without_verbose_and_shows_ray_with_it(tiny_synthetic, tmp_path):
    argv = ["--species", "tiger", "--manifest", tiny_synthetic, "--num-samples", "1", "--max-concurrent", "1",
            "--epochs", "1", *tiny_dve_flags(), "--set", "schedule.warmup_epochs=0", "--dataset", "synthetic"]
    homes = {"verbose": tmp_path / "verbose", "quiet": tmp_path / "quiet"}
    # Two real sweeps, each with its own local Ray and MLflow store, at the same time (their start-ups overlap).
    runs = {mode: _sweep(argv + (["--verbose"] if mode == "verbose" else []), home) for mode, home in homes.items()}
    output = {mode: run.communicate(timeout=540)[0] for mode, run in runs.items()}
    for mode, run in runs.items():
        assert run.returncode == 0, f"{mode}:\n{output[mode][-3000:]}"
    verbose, quiet = output["verbose"].splitlines(), output["quiet"].splitlines()
    print(f"verbose: {len(verbose)} lines, quiet: {len(quiet)} lines\n" + "\n".join(quiet))  # shown with -s

    assert sum(CHECKPOINT_LINE in line for line in verbose) >= 1
    assert any(line.startswith("Trial status:") for line in verbose)  # Tune's status table
    assert not any(CHECKPOINT_LINE in line for line in quiet)
    assert not any(line.startswith(("Trial status:", "╭", "│")) for line in quiet)
    assert len(quiet) <= QUIET_MAX_LINES < len(verbose)
    assert any(line.startswith("tune tiger: 1/1 trials (100%)") for line in quiet)  # the stage's progress
    assert any(line.startswith("tune tiger: 1 trials, 1 epochs") for line in quiet)  # and its summary
    assert any(line.startswith("| tiger | ") for line in quiet)  # the final table

    # The quiet sweep's runs name their data, and its registered model carries its pictures.
    settings = Settings.from_env({"REID_HOME": str(homes["quiet"])})
    client = MlflowClient(settings.tracking_uri)
    rows = manifest.read(tiny_synthetic).filter(pl.col("species") == "tiger")
    version = tracking.get_version_by_alias("reid-dve-tiger", "candidate", settings=settings)
    parent = client.get_run(version.run_id).data.tags["mlflow.parentRunId"]
    for run_id in (parent, version.run_id):
        [data] = client.get_run(run_id).inputs.dataset_inputs
        assert (data.dataset.name, data.dataset.digest) == ("synthetic-tiger", tracking.data_version(rows))
        assert json.loads(data.dataset.source)["uri"] == str(Path(tiny_synthetic).resolve())
    pictures = {k: v for k, v in version.tags.items() if k.startswith("picture.")}
    assert set(pictures) == {"picture.rank_lists", "picture.embeddings", "picture.dve_correspondence"}
    logged = {f.path for f in client.list_artifacts(version.run_id, "pictures")}
    assert logged == set(pictures.values())
