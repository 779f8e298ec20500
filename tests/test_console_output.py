"""What a person sees on the console: a progress line per stage and a summary, Ray's own output only
with --verbose."""

import io
import json
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
# One process, two real sweeps (verbose first: quiet only turns loggers down): one trial, one epoch.
SCRIPT = """
import json, os, sys
import ray
from reid_core.pipelines import tune_cli
argv, homes = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for mode, home in homes.items():
    os.environ["REID_HOME"] = home
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # set by the previous run's MLflow client
        os.environ.pop(key, None)
    print(f"=== {mode} ===", flush=True)
    code = tune_cli.main("dve", argv + (["--verbose"] if mode == "verbose" else []))
    ray.shutdown()  # stops Ray's log monitor: nothing of this run can print after the next marker
    print(f"=== {mode} exit {code} ===", flush=True)
"""


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


def _section(output: str, mode: str) -> list[str]:
    start, end = f"=== {mode} ===", f"=== {mode} exit 0 ==="
    assert start in output and end in output, output[-3000:]
    return output.split(start, 1)[1].split(end, 1)[0].strip("\n").splitlines()


@pytest.mark.slow
def test_a_sweep_is_quiet_without_verbose_and_shows_ray_with_it(tiny_synthetic, tmp_path):
    argv = ["--species", "tiger", "--manifest", tiny_synthetic, "--num-samples", "1", "--max-concurrent", "1",
            "--epochs", "1", *tiny_dve_flags(), "--set", "schedule.warmup_epochs=0", "--dataset", "synthetic"]
    homes = {"verbose": str(tmp_path / "verbose"), "quiet": str(tmp_path / "quiet")}
    run = subprocess.run([sys.executable, "-u", "-c", SCRIPT, json.dumps(argv), json.dumps(homes)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=540,
                         env={**_env(), "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stdout[-3000:]
    verbose, quiet = _section(run.stdout, "verbose"), _section(run.stdout, "quiet")
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
    settings = Settings.from_env({"REID_HOME": homes["quiet"]})
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


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
