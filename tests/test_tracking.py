"""reid_core.tracking against a real SQLite-backed MLflow in a temporary REID_HOME.

One store per module: creating an MLflow SQLite database runs its migrations (seconds), so the
tests share one and use distinct experiment / model names.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import polars as pl
import pytest
import torch
from mlflow import MlflowClient

from reid_core import tracking
from reid_core.reports.tables import markdown_table
from reid_core.settings import Settings
from reid_core.tracking import store


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    home = tmp_path_factory.mktemp("reid_home")
    return Settings.from_env({"REID_HOME": str(home)})


@pytest.fixture(scope="module")
def client(settings) -> MlflowClient:
    return tracking.configure(settings)


@pytest.fixture
def in_empty_cwd(tmp_path, monkeypatch) -> Path:
    """Run from an empty directory, like a Ray job's temporary working dir."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def manifest() -> pl.DataFrame:
    return pl.DataFrame({
        "image_id": ["a", "b", "c", "d"],
        "image_uri": ["/d/a.jpg", "/d/b.jpg", "/d/c.jpg", "/d/d.jpg"],
        "species": ["tiger"] * 4,
        "individual": ["t1", "t1", "t2", None],
        "entity": ["t1", "t1", "t2", None],
        "split": ["train", "train", "test", "test"],
        "role": [None, None, "gallery", "query"],
    })


class TinyReid(torch.nn.Module):
    """Conv -> BN -> global average pool -> linear embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def tiny_model(seed: int) -> TinyReid:
    torch.manual_seed(seed)
    model = TinyReid()
    # Non-trivial running stats, so exporting in train mode (batch statistics) would be caught.
    model.bn.running_mean.uniform_(-0.5, 0.5)
    model.bn.running_var.uniform_(0.5, 2.0)
    return model


# --- store -------------------------------------------------------------------------------------

def test_configure_uses_reid_home_and_creates_experiment_once(settings, client, monkeypatch, in_empty_cwd):
    monkeypatch.setenv("REID_HOME", str(settings.home))  # the module's already-migrated store

    configured = tracking.configure()
    first = tracking.get_or_create_experiment(tracking.experiment_name("dve"))
    second = tracking.get_or_create_experiment("reid-dve")

    assert mlflow.get_tracking_uri() == f"sqlite:///{settings.home}/mlflow.db"
    assert configured.tracking_uri == f"sqlite:///{settings.home}/mlflow.db"
    assert first == second
    assert [e.name for e in client.search_experiments(filter_string="name = 'reid-dve'")] == ["reid-dve"]
    location = client.get_experiment(first).artifact_location
    assert location == f"file://{settings.home}/mlartifacts/reid-dve"
    path = Path(urlparse(location).path)
    assert path.is_absolute()
    assert path.relative_to(settings.home / "mlartifacts") == Path("reid-dve")
    assert not (in_empty_cwd / "mlruns").exists()


def test_server_decides_artifact_location_for_http_tracking(tmp_path):
    remote = Settings.from_env({"REID_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"})
    local = Settings.from_env({"REID_HOME": str(tmp_path)})

    assert store.is_remote("https://mlflow.example.org") and not store.is_remote(local.tracking_uri)
    assert store.experiment_artifact_location("reid-care", remote) is None
    assert store.experiment_artifact_location("reid-care", local) == f"file://{tmp_path}/mlartifacts/reid-care"


def test_deleted_experiment_is_reported_not_resurrected(settings, client):
    experiment_id = tracking.get_or_create_experiment("reid-deleted", settings)
    client.delete_experiment(experiment_id)

    with pytest.raises(RuntimeError, match=r"is deleted\. Restore it"):
        tracking.get_or_create_experiment("reid-deleted", settings)


# --- provenance --------------------------------------------------------------------------------

def test_data_version_ignores_row_order_and_tracks_labels(tmp_path):
    df = manifest()
    version = tracking.data_version(df)
    path = tmp_path / "manifest.parquet"
    df.write_parquet(path)

    assert re.fullmatch(r"[0-9a-f]{12}", version)
    assert tracking.data_version(df.reverse()) == version
    assert tracking.data_version(df.sample(fraction=1.0, shuffle=True, seed=3)) == version
    assert tracking.data_version(df.with_columns(pl.lit("x").alias("camera"))) == version  # extra columns
    assert tracking.data_version(path) == version
    assert tracking.data_version(str(path)) == version
    relabelled = df.with_columns(pl.when(pl.col("image_id") == "c").then(pl.lit("t1"))
                                 .otherwise(pl.col("entity")).alias("entity"))
    assert tracking.data_version(relabelled) != version
    resplit = df.with_columns(pl.when(pl.col("image_id") == "a").then(pl.lit("val"))
                              .otherwise(pl.col("split")).alias("split"))
    assert tracking.data_version(resplit) != version
    assert tracking.data_version(df.head(3)) != version
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['entity'\]"):
        tracking.data_version(df.drop("entity"))


def test_git_commit_is_head_inside_git_and_unknown_outside(tmp_path, monkeypatch):
    monkeypatch.delenv("REID_GIT_COMMIT", raising=False)
    repo = Path(tracking.__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("the package is not in a git checkout")

    assert tracking.git_commit() == head.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", tracking.git_commit())
    assert isinstance(tracking.git_dirty(), bool)
    assert tracking.git_commit(tmp_path) == "unknown"
    assert tracking.git_dirty(tmp_path) is None
    monkeypatch.setenv("REID_GIT_COMMIT", "abc123")
    assert tracking.git_commit() == "abc123"


# --- runs --------------------------------------------------------------------------------------

def test_sweep_parent_with_two_trial_children(settings, client, monkeypatch):
    monkeypatch.setenv("REID_GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    tags = tracking.standard_tags("tiger", "dve", "atrw", tracking.data_version(manifest()))
    parent = tracking.start_sweep_run("reid-dve", "tiger", "dve", tags=tags,
                                      params={"search": {"algo": "tpe", "num_samples": 2}}, settings=settings)
    first = tracking.log_trial_run(
        parent,
        params={"lr": 0.001, "lambda_dve": 0.5},
        metrics_history=[{"epoch": 1, "loss": 0.9, "val_mAP": 0.20, "trial_id": "t0"},
                         {"epoch": 2, "loss": 0.7, "val_mAP": 0.35, "trial_id": "t0"}],
        final_metrics={"test_mAP": 0.31, "test_rank1": 0.50},
        tags={"trial_id": "t0"}, run_name="trial-0", settings=settings,
    )
    second = tracking.log_trial_run(
        parent,
        params={"lr": 0.01, "lambda_dve": 1.0},
        metrics_history={0: {"loss": 1.2, "val_mAP": 0.10}, 1: {"loss": 1.1, "val_mAP": 0.12},
                         2: {"loss": 1.0, "val_mAP": 0.15}},
        tags={"trial_id": "t1"}, run_name="trial-1", status="KILLED", settings=settings,
    )
    tracking.end_run(parent, settings=settings)

    parent_run = client.get_run(parent)
    assert parent_run.info.run_name == "sweep-tiger"
    assert parent_run.info.status == "FINISHED"
    assert parent_run.data.params == {"search.algo": "tpe", "search.num_samples": "2"}
    for run_id in (first, second):
        run = client.get_run(run_id)
        assert run.info.experiment_id == parent_run.info.experiment_id
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert {k: run.data.tags[k] for k in ("species", "method", "dataset", "data_version", "git_commit")} == {
            "species": "tiger", "method": "dve", "dataset": "atrw",
            "data_version": tracking.data_version(manifest()),
            "git_commit": "0123456789abcdef0123456789abcdef01234567",
        }
        assert run.data.tags["run_kind"] == "trial"

    run = client.get_run(first)
    assert run.info.run_name == "trial-0" and run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.001", "lambda_dve": "0.5"}
    assert run.data.tags["trial_id"] == "t0"
    history = sorted((m.step, m.value) for m in client.get_metric_history(first, "val_mAP"))
    assert history == [(1, 0.20), (2, 0.35)]
    assert sorted((m.step, m.value) for m in client.get_metric_history(first, "loss")) == [(1, 0.9), (2, 0.7)]
    assert [(m.step, m.value) for m in client.get_metric_history(first, "test_mAP")] == [(3, 0.31)]
    assert "trial_id" not in run.data.metrics and "epoch" not in run.data.metrics
    assert client.get_run(second).info.status == "KILLED"
    assert sorted((m.step, m.value) for m in client.get_metric_history(second, "val_mAP")) == [
        (0, 0.10), (1, 0.12), (2, 0.15)]

    table = tracking.child_runs(parent, settings=settings).sort("run_name")
    assert table["run_id"].to_list() == [first, second]
    assert table["params.lr"].to_list() == ["0.001", "0.01"]
    assert table["metrics.val_mAP"].to_list() == [0.35, 0.15]
    assert table["metrics.test_mAP"].to_list() == [0.31, None]
    assert table["tags.trial_id"].to_list() == ["t0", "t1"]
    assert table["status"].to_list() == ["FINISHED", "KILLED"]
    assert table.schema["metrics.val_mAP"] == pl.Float64

    latest = tracking.latest_run("reid-dve", "tags.run_kind = 'sweep' and tags.species = 'tiger'", settings=settings)
    assert latest is not None and latest.info.run_id == parent
    assert tracking.latest_run("reid-nonexistent", settings=settings) is None
    assert tracking.child_runs(first, settings=settings).height == 0


def test_log_metrics_and_tables(settings, client, tmp_path):
    parent = tracking.start_sweep_run("reid-care", "yak", "care", settings=settings)
    tracking.log_metrics(parent, {"mAP": np.float32(0.5), "rank1": 0.75, "note": "skip", "flag": True}, step=4,
                         settings=settings)
    summary = pl.DataFrame({"species": ["yak", "lynx"], "mAP": [0.5, 0.25], "rank1": [0.75, None]})
    for name in ("summary/final.csv", "summary/final.json", "summary/final.parquet"):
        tracking.log_table(parent, summary, name, settings=settings)
    tracking.log_text(parent, markdown_table(summary, float_format=".4g"), "summary/final.md", settings=settings)
    with pytest.raises(ValueError, match="unsupported extension '.txt'"):
        tracking.log_table(parent, summary, "final.txt", settings=settings)

    assert client.get_run(parent).data.metrics == {"mAP": 0.5, "rank1": 0.75}
    assert [m.step for m in client.get_metric_history(parent, "mAP")] == [4]
    local = Path(client.download_artifacts(parent, "summary", str(tmp_path)))
    assert sorted(p.name for p in local.iterdir()) == ["final.csv", "final.json", "final.md", "final.parquet"]
    assert (local / "final.csv").read_text() == "species,mAP,rank1\nyak,0.5,0.75\nlynx,0.25,\n"
    assert (local / "final.md").read_text().splitlines() == [
        "| species | mAP | rank1 |", "|---|---|---|", "| yak | 0.5 | 0.75 |", "| lynx | 0.25 |  |"]
    assert json.loads((local / "final.json").read_text())["columns"] == ["species", "mAP", "rank1"]
    assert pl.read_parquet(local / "final.parquet").equals(summary)


# --- models and registry ------------------------------------------------------------------------

def test_log_register_and_load_pt2_model(settings, client, monkeypatch, in_empty_cwd):
    monkeypatch.setenv("REID_HOME", str(settings.home))  # so "models:/..." loads resolve this store
    data_version = tracking.data_version(manifest())
    parent = tracking.start_sweep_run("reid-dve", "tiger", "dve", settings=settings,
                                      tags=tracking.standard_tags("tiger", "dve", "atrw", data_version))
    example = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    model = tiny_model(seed=1).train()  # logging must export it in eval mode and leave it in train mode
    name = tracking.registered_model_name("dve", "tiger")

    uri = tracking.log_reid_model(parent, model, example, metadata={"embedding_dim": 4, "image_size": 32},
                                  settings=settings)
    version = tracking.register(uri, name, tags={"test_mAP": 0.31, "test_rank1": 0.5}, settings=settings)

    assert name == "reid-dve-tiger"
    assert model.training
    assert re.fullmatch(r"models:/m-[0-9a-f]{32}", uri)
    logged = client.get_logged_model(uri.removeprefix("models:/"))
    assert logged.experiment_id == client.get_run(parent).info.experiment_id
    assert logged.source_run_id == parent
    assert logged.artifact_location.startswith(f"file://{settings.home}/mlartifacts/reid-dve/")
    assert not (in_empty_cwd / "mlruns").exists()
    artifacts = Path(urlparse(logged.artifact_location).path)
    assert (artifacts / "data" / "model.pt2").is_file() and not (artifacts / "data" / "model.pth").exists()
    requirements = (artifacts / "requirements.txt").read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements
    assert f"mlflow=={mlflow.__version__}" in requirements
    info = mlflow.models.get_model_info(uri)
    assert info.metadata == {"embedding_dim": 4, "image_size": 32}
    assert [spec.shape for spec in info.signature.inputs.inputs] == [(-1, 3, 32, 32)]
    assert [spec.shape for spec in info.signature.outputs.inputs] == [(-1, 4)]
    assert not (artifacts / "input_example.json").exists()  # traced from a tensor, not stored as JSON

    assert int(version.version) == 1  # an int from the SQLite store, a str over REST
    assert version.aliases == ["candidate"]
    assert {k: version.tags[k] for k in ("run_id", "data_version", "species", "test_mAP", "test_rank1")} == {
        "run_id": parent, "data_version": data_version, "species": "tiger", "test_mAP": "0.31", "test_rank1": "0.5"}
    assert version.tags["git_commit"] == client.get_run(parent).data.tags["git_commit"]
    assert int(tracking.get_version_by_alias(name, "candidate", settings=settings).version) == 1

    model.eval()
    loaded = mlflow.pytorch.load_model("models:/reid-dve-tiger@candidate")
    ours = tracking.load_model(tracking.model_uri(name, "candidate"), settings=settings)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for batch in (2, 5, 1):  # 5 and 1 differ from the example's batch of 2
            x = torch.rand(batch, 3, 32, 32, generator=generator)
            expected = model(x)
            assert loaded(x).shape == (batch, 4)
            torch.testing.assert_close(loaded(x), expected, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-6)

    # A better model: version 2 takes the candidate alias; production is set by hand.
    better = tiny_model(seed=2).eval()
    version2 = tracking.register(tracking.log_reid_model(parent, better, example, settings=settings), name,
                                 tags={"test_mAP": 0.4}, settings=settings)
    tracking.set_alias(name, tracking.PRODUCTION, 1, settings=settings)

    assert int(version2.version) == 2 and version2.aliases == ["candidate"]
    assert version2.tags["test_mAP"] == "0.4"
    assert int(tracking.get_version_by_alias(name, "candidate", settings=settings).version) == 2
    assert int(tracking.get_version_by_alias(name, "production", settings=settings).version) == 1
    assert client.get_model_version(name, "1").aliases == ["production"]
    assert tracking.get_version_by_alias(name, "staging", settings=settings) is None
    assert tracking.get_version_by_alias("reid-dve-nobody", "candidate", settings=settings) is None
    x = torch.rand(3, 3, 32, 32, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(tracking.load_model(tracking.model_uri(name))(x), better(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(tracking.load_model(tracking.model_uri(name, "production"))(x), model(x),
                                   rtol=1e-5, atol=1e-6)
    assert not (in_empty_cwd / "mlruns").exists()


def test_log_reid_model_rejects_a_batch_of_one(settings):
    run_id = tracking.start_sweep_run("reid-dve", "lynx", "dve", settings=settings)

    with pytest.raises(ValueError, match=r"batch size >= 2 \(got shape \(1, 3, 32, 32\)\)"):
        tracking.log_reid_model(run_id, tiny_model(0), np.zeros((1, 3, 32, 32), np.float32), settings=settings)


def test_log_reid_model_needs_one_embedding_tensor(settings):
    class TwoHeads(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.mean(dim=(2, 3)), x.amax(dim=(2, 3))

    run_id = tracking.start_sweep_run("reid-dve", "lynx", "dve", settings=settings)
    with pytest.raises(TypeError, match=r"returning one tensor \(the embedding\), got tuple"):
        tracking.log_reid_model(run_id, TwoHeads(), np.zeros((2, 3, 8, 8), np.float32), settings=settings)


def test_registered_model_name_is_parseable():
    assert tracking.registered_model_name("pawvit", "sea_turtle") == "reid-pawvit-sea_turtle"
    with pytest.raises(ValueError, match="species 'Sea Turtle' must be lower-case"):
        tracking.registered_model_name("dve", "Sea Turtle")
    with pytest.raises(ValueError, match="method 'dve-v2' must be lower-case"):
        tracking.registered_model_name("dve-v2", "tiger")
