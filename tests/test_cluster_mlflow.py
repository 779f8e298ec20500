"""cluster/kuberay/mlflow.yaml's settings, run for real: mlflow/serve_production.sh with the ConfigMap's
environment, reached under each name of the Kubernetes Service (the Host header MLflow checks)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time

import pytest
import requests
from cluster_support import KUBERAY, ROOT, load_docs
from conftest import stop_process_group

SCRIPT = ROOT / "mlflow" / "serve_production.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manifest_config() -> dict[str, str]:
    docs = load_docs(KUBERAY / "mlflow.yaml")
    return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "reid-mlflow-config")["data"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The production server with the manifest's settings; only what a laptop must change is changed:
    127.0.0.1 and a free port (the Host names keep their form, with that port), one worker, SQLite
    standing in for PostgreSQL, and fresh secrets standing in for the Secret."""
    tmp = tmp_path_factory.mktemp("mlflow-k8s")
    config, port = manifest_config(), _free_port()
    manifest_port = config["MLFLOW_PORT"]
    password = secrets.token_hex(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env |= config | {
        "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port), "MLFLOW_WORKERS": "1",
        "MLFLOW_SERVER_ALLOWED_HOSTS": config["MLFLOW_SERVER_ALLOWED_HOSTS"].replace(f":{manifest_port}", f":{port}"),
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
        "HOME": str(tmp),
    }
    log = tmp / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve_production.sh did not become healthy (exit {process.poll()}):\n"
                            f"{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, port, manifest_port, ("admin", password)
    finally:
        stop_process_group(process)


@pytest.mark.slow
def test_the_service_names_are_allowed_and_other_hosts_are_not(server):
    url, port, manifest_port, auth = server
    hosts = [h.replace(f":{manifest_port}", f":{port}") for h in manifest_config()["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")]
    assert f"mlflow.reid.svc.cluster.local:{port}" in hosts
    api = f"{url}/api/2.0/mlflow/experiments/search"
    for host in hosts:
        response = requests.get(api, params={"max_results": 1}, headers={"Host": host}, auth=auth, timeout=30)
        assert response.status_code == 200, (host, response.status_code, response.text[:300])
        assert "experiments" in response.json()
    rejected = requests.get(api, params={"max_results": 1}, headers={"Host": f"mlflow.evil.example:{port}"},
                            auth=auth, timeout=30)
    assert rejected.status_code in (400, 403), rejected.status_code
    # The name without its port is not what clients send to a Service on 5000: it is not allowed either.
    bare = requests.get(api, params={"max_results": 1}, headers={"Host": "mlflow.reid.svc.cluster.local"},
                        auth=auth, timeout=30)
    assert bare.status_code in (400, 403), bare.status_code


@pytest.mark.slow
def test_health_answers_the_kubelet_without_credentials(server):
    """The probes send no credentials and the pod's IP as Host: /health must still answer 200, while the
    API without credentials asks for them (basic auth is on)."""
    url, port, _, _ = server
    assert requests.get(f"{url}/health", headers={"Host": f"10.1.2.3:{port}"}, timeout=30).status_code == 200
    unauthenticated = requests.get(f"{url}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                                   headers={"Host": f"mlflow.reid.svc.cluster.local:{port}"}, timeout=30)
    assert unauthenticated.status_code == 401
