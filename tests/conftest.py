"""Shared fixtures: real services on 127.0.0.1, isolated REID_HOME."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest

# Fixtures that start a service: a test using one (directly or through another fixture) is ``slow``,
# whether or not it says so, so that ``make test-fast`` (-m "not slow") never starts Ray, moto or a server.
SERVICE_FIXTURES = frozenset({
    "ray_local", "ray_head", "token_ray_head", "shared_cluster",  # Ray
    "s3_server", "moto_endpoint",  # moto
    "server",  # an MLflow server (test_cluster_mlflow.py)
})


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def isolated_reid_home(tmp_path, monkeypatch):
    """No test touches the user's ~/.reid or a configured tracking server."""
    monkeypatch.setenv("REID_HOME", str(tmp_path / "reid_home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield tmp_path / "reid_home"
    # tracking.configure() sets MLflow's process-wide tracking and registry URIs (globals and environment
    # variables; monkeypatch restores the variables): a later test's bare MlflowClient(uri) would
    # otherwise still send registry calls to this test's store or (stopped) server.
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def single_torch_thread():
    """Two OpenMP threads on a shared 2-core box spin against other processes (5-10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def moto_server():
    """A moto server on 127.0.0.1 of its own (its S3/IAM state and auth); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def stop_process_group(process, timeout: float = 20) -> None:
    """SIGTERM a process started with ``start_new_session=True`` and its group; SIGKILL after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def session_processes(sid: int) -> list[int]:
    """Live processes of a session (Ray's workers get their own process groups, not sessions)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.getsid(int(entry)) == sid:
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    pids.append(int(entry))
        except (OSError, IndexError):
            continue
    return pids


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start_new_session=True`` and everything it started (its own
    Ray), and wait until they are gone: a killed driver, as a lost VM or an OOM kill leaves it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = session_processes(process.pid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.poll()
        time.sleep(0.2)
    process.wait()
    assert not session_processes(process.pid), "processes of the killed run survived"


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 (pyarrow and Ray ignore moto's in-process mocks)."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket on the local endpoint; returns its s3:// URI. Credentials are moto's dummies."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "REID_S3_ENDPOINT_URL": s3_server,
    }.items():
        monkeypatch.setenv(key, value)
    name = f"reid-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    assert os.environ["REID_S3_ENDPOINT_URL"] == s3_server
    return f"s3://{name}"


# A CPU-sized DVE: the cpu preset with a plain ResNet-18, smaller images, batches that fit a handful of
# identities and a one-epoch warm-up (so the two-stage path runs).
TINY_PRESET = "cpu"
TINY_DVE = {
    "backbone.kwargs": {}, "input.size": 48, "batch.ids_per_batch": 4, "batch.images_per_id": 2,
    "schedule.warmup_epochs": 1, "optim.lr": 1e-3,
}


def tiny_dve_flags() -> list[str]:
    """TINY_DVE as workflow flags."""
    import json

    return ["--preset", TINY_PRESET, *(f"--set={k}={json.dumps(v)}" for k, v in TINY_DVE.items())]


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """One small synthetic species on disk (tiger: 10 individuals x 4 images at 48 px)."""
    from reid_core.data import synthetic

    out = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(out, species=("tiger",), individuals=10, images_per_individual=4, size=48, seed=0,
                       val_fraction=0.2, test_fraction=0.3, workers=1)
    return str(out / "manifest.parquet")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (start-up costs seconds)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
