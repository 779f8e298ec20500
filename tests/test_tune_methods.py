"""A 2-trial sweep of tune_pawvit.py and tune_care.py: a parent run, two child runs with the method's
searched params, a candidate that loads from the registry, and the method's picture on the version
(PAW-ViT's part attention maps, CARE's prototype t-SNE)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from method_support import tiny_overrides
from mlflow import MlflowClient

from reid_core import tracking
from reid_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    # workflow, searched params every child must log, the picture the version names
    "pawvit": ("tune_pawvit", ("parts.num_parts", "losses.lambda_seg", "losses.alpha"), "part_attention"),
    "care": ("tune_care", ("text.prompt_tokens", "losses.triplet_margin"), "care_prototypes"),
}
EXTRA = {"care": {"phase1.epochs": 2}}  # phase 1 runs on cached features; 2 epochs show it ran


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_two_trial_method_sweep_registers_a_candidate_with_its_picture(name, tiny_synthetic, ray_local,
                                                                        monkeypatch):
    workflow, searched, picture = CASES[name]
    overrides = tiny_overrides(name, epochs=1) | EXTRA.get(name, {})
    argv = ["--species", "tiger", "--manifest", tiny_synthetic, "--num-samples", "2", "--max-concurrent", "1",
            "--preset", "cpu", "--seed", "1", *(f"--set={k}={json.dumps(v)}" for k, v in overrides.items())]
    assert _run_workflow(workflow, argv, monkeypatch) == 0

    settings = Settings.from_env()
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(tracking.experiment_name(name))
    (parent,) = client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'sweep-tiger'")
    assert parent.info.status == "FINISHED"
    children = tracking.child_runs(parent.info.run_id, settings=settings)
    assert children.height == 2 and set(children["status"]) == {"FINISHED"}
    for key in searched:
        assert children[f"params.{key}"].null_count() == 0, key
    if name == "pawvit":  # K among the tiger scheme's groupings
        assert set(children["params.parts.num_parts"].cast(int)) <= {3, 4, 5}

    registered = f"reid-{name}-tiger"
    version = tracking.get_version_by_alias(registered, tracking.CANDIDATE, settings)
    assert version.run_id in children["run_id"].to_list()
    path = version.tags[f"picture.{picture}"]
    artifacts = [a.path for a in client.list_artifacts(version.run_id, "pictures")]
    assert path in artifacts and path.endswith(".png")

    if name == "pawvit":  # the part tokens' segmentation, per epoch and at the end (reid reproduce reads it)
        metrics = client.get_run(version.run_id).data.metrics
        assert 0.0 <= metrics["val.part_mIoU"] <= 1.0 and 0.0 <= metrics["test.part_mIoU"] <= 1.0
        assert 0.0 < metrics["test.part_mIoU_chance"] < 1.0
        history = client.get_metric_history(version.run_id, "val.part_mIoU")
        assert len(history) >= 1

    model = tracking.load_model(f"models:/{registered}@candidate", settings=settings)
    embedding = model(torch.randn(2, 3, 64, 64))
    assert embedding.shape[0] == 2 and torch.allclose(embedding.norm(dim=1), torch.ones(2), atol=1e-4)


def _run_workflow(workflow: str, argv: list[str], monkeypatch) -> int:
    """The workflow script itself, in this process (tune_pawvit.py / tune_care.py: the generic tune
    with its method)."""
    monkeypatch.setattr(sys, "argv", [f"{workflow}.py", *argv])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(ROOT / "workflows" / f"{workflow}.py"), run_name="__main__")
    return exited.value.code
