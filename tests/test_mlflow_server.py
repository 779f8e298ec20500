"""The MLflow servers in mlflow/: refusals without secrets, the basic-auth app, and the UI end to end.

The end-to-end test starts the local server (mlflow/serve_local.sh), runs a tiny tune and a promotion
through it, and reads the UI in headless Chromium; its screenshots are kept under
``artifacts/test_mlflow_server/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import TINY_DVE, TINY_PRESET, stop_process_group

ROOT = Path(__file__).resolve().parents[1]
SERVE_LOCAL = ROOT / "mlflow" / "serve_local.sh"
SERVE_PRODUCTION = ROOT / "mlflow" / "serve_production.sh"
ARTIFACTS = ROOT / "artifacts" / "test_mlflow_server"
MODEL = "reid-dve-tiger"
# What the checks read from the environment; each server gets a clean copy of the rest.
SERVER_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                    "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_CONFIG_PATH",
                    "MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_PORT", "MLFLOW_HOST")


def server_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    env.update(values)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, auth: tuple[str, str] | None = None) -> int:
    """The HTTP status of GET ``url``; 0 while nothing listens."""
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return 0


@contextlib.contextmanager
def running_server(script: Path, env: Mapping[str, str], port: int, log: Path) -> Iterator[str]:
    """Run ``script`` in its own process group until /health answers; stop the whole group after."""
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        process = subprocess.Popen(["bash", str(script)], env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while get(f"{url}/health") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{script.name} did not become healthy (exit {process.poll()}):\n"
                            f"{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(process)


def chromium() -> str:
    found = os.environ.get("REID_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium not found: `make browser` installs Debian's chromium (or set REID_CHROMIUM)")
    return found


def render(url: str, screenshot: Path, expected: list[str], profile: Path) -> str:
    """The page's DOM once every ``expected`` pattern is in it, and a screenshot of that render.

    Chromium's virtual time does not advance while requests are pending, so the budget is time for the
    single-page app to run after its data arrived; a slow machine gets a longer budget on a retry.
    """
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    dom = ""
    for budget_ms in (5000, 15000, 30000):
        result = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}", "--window-size=1400,900", f"--virtual-time-budget={budget_ms}",
             f"--screenshot={screenshot}", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
        dom = result.stdout
        missing = [pattern for pattern in expected if not re.search(pattern, dom)]
        if not missing:
            return dom
    pytest.fail(f"{url} never showed {missing} (screenshot: {screenshot}):\n{result.stderr[-2000:]}")


# --- refusals: no secrets, no server ------------------------------------------------------------------

GOOD_PASSWORD = "correct-horse-battery"
GOOD_KEY = "0123456789abcdef" * 4


@pytest.mark.parametrize(("values", "message"), [
    ({}, "MLFLOW_AUTH_ADMIN_PASSWORD is not set"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": ""}, "MLFLOW_AUTH_ADMIN_PASSWORD is not set"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": "password1234"}, "MLFLOW_AUTH_ADMIN_PASSWORD is set to a well-known default"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": "short"}, "MLFLOW_AUTH_ADMIN_PASSWORD must be at least 12 characters"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": GOOD_PASSWORD}, "MLFLOW_FLASK_SERVER_SECRET_KEY is not set"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": GOOD_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": "password1234"},
     "MLFLOW_FLASK_SERVER_SECRET_KEY is set to a well-known default"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": GOOD_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": "change-me"},
     "MLFLOW_FLASK_SERVER_SECRET_KEY is set to a well-known default"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": GOOD_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": "abc123"},
     "MLFLOW_FLASK_SERVER_SECRET_KEY must be at least 32 characters"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": GOOD_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": GOOD_KEY},
     "MLFLOW_BACKEND_STORE_URI is not set"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": GOOD_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": GOOD_KEY,
      "MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow@db:5432/mlflow"}, "MLFLOW_ARTIFACTS_DESTINATION is not set"),
])
def test_production_server_refuses_to_start_without_real_secrets(values, message):
    result = subprocess.run(["bash", str(SERVE_PRODUCTION)], env=server_env(**values), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr and result.stdout == ""
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        if len(values.get(name, "")) >= 8:  # long enough not to occur by accident
            assert values[name] not in result.stderr


# --- the production server's auth app and S3 proxy (SQLite stands in for PostgreSQL) -------------------

@pytest.mark.slow
def test_production_server_requires_the_admin_password_and_proxies_s3(s3_bucket, s3_server, tmp_path,
                                                                       monkeypatch):
    import boto3
    from mlflow import MlflowClient

    password, key = secrets.token_urlsafe(16), secrets.token_hex(32)
    port = free_port()
    env = server_env(MLFLOW_AUTH_ADMIN_PASSWORD=password, MLFLOW_FLASK_SERVER_SECRET_KEY=key,
                     MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                     MLFLOW_ARTIFACTS_DESTINATION=f"{s3_bucket}/mlflow", MLFLOW_S3_ENDPOINT_URL=s3_server,
                     MLFLOW_PORT=str(port), MLFLOW_WORKERS="1", TMPDIR=str(tmp_path))  # its auth config
    log = tmp_path / "server.log"
    with running_server(SERVE_PRODUCTION, env, port, log) as url:
        api = f"{url}/api/2.0/mlflow/experiments/search?max_results=5"
        assert get(api) == 401
        assert get(api, ("admin", "not-the-password")) == 401
        assert get(api, ("admin", password)) == 200

        # Artifacts go through the server into the bucket; the client needs only its MLflow login.
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        client = MlflowClient(url)
        run = client.create_run(client.create_experiment("auth-check"))
        client.log_text(run.info.run_id, "hello", "note.txt")
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert client.download_artifacts(run.info.run_id, "note.txt", str(tmp_path)) == str(tmp_path / "note.txt")
        s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket.removeprefix("s3://"))["Contents"]]
        assert [k for k in keys if k.startswith("mlflow/") and k.endswith(f"{run.info.run_id}/artifacts/note.txt")]

    output = log.read_text()
    assert "auth=basic-auth" in output and "artifacts: s3://" in output
    auth_config = next(tmp_path.glob("reid-mlflow-auth.*/basic_auth.ini"))
    assert oct(auth_config.stat().st_mode & 0o777) == "0o600" and oct(auth_config.parent.stat().st_mode & 0o777) == "0o700"
    assert "database_uri = sqlite:///" in auth_config.read_text() and password not in auth_config.read_text()
    assert password not in output and key not in output


# --- end to end: tune and promote through the local server, read the UI in Chromium ---------------------

@pytest.mark.slow
def test_ui_lists_the_trials_and_shows_the_production_alias(tiny_synthetic, ray_local, tmp_path, monkeypatch,
                                                           isolated_reid_home):
    from reid_core import tracking
    from reid_core.cli import promote as promote_cli
    from reid_core.pipelines.tune import TuneRequest, run_tuning
    from reid_core.settings import Settings

    server_home, port = tmp_path / "server_home", free_port()
    env = server_env(REID_HOME=str(server_home), MLFLOW_PORT=str(port))
    with running_server(SERVE_LOCAL, env, port, tmp_path / "server.log") as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        settings = Settings.from_env()
        assert settings.tracking_uri == url

        request = TuneRequest(method="dve", species=["tiger"], manifest=tiny_synthetic, num_samples=2,
                              max_concurrent=2, epochs=1, seed=3, preset=TINY_PRESET, overrides=dict(TINY_DVE),
                              dataset="synthetic")
        table = run_tuning(request, settings)
        assert table["model"].to_list() == [f"{MODEL} v1"]
        assert promote_cli.main(["--model", MODEL, "--alias", "candidate", "--manifest", tiny_synthetic]) == 0
        assert tracking.production_version(MODEL, settings) == "1"

        sweep = tracking.latest_run("reid-dve", "tags.mlflow.runName = 'sweep-tiger'", settings)
        trials = tracking.child_runs(sweep.info.run_id, settings=settings)["run_name"].to_list()
        assert len(trials) == 2 and all(name.startswith("trial-") for name in trials)

        # Everything went through the server: its store holds the runs and the model, the client's none.
        assert (server_home / "mlflow.db").exists() and any((server_home / "mlartifacts").rglob("*"))
        assert not (isolated_reid_home / "mlflow.db").exists()

        # Sorted by name, the runs table lists the trials beside their sweep (by start time it nests them).
        # The model page shows version 1 with the production alias. Both pages render at once.
        runs = f"{url}/#/experiments/{sweep.info.experiment_id}/runs?orderByKey=attributes.run_name&orderByAsc=true"
        pages = [(runs, ARTIFACTS / "runs.png", [f">{re.escape(name)}<" for name in [*trials, "sweep-tiger"]]),
                 (f"{url}/#/models/{MODEL}", ARTIFACTS / "model.png", [r"@(?:&nbsp;|\s)production<", r">Version 1<"])]
        with ThreadPoolExecutor(len(pages)) as pool:
            renders = [pool.submit(render, page, shot, expected, tmp_path / f"chromium-{shot.stem}")
                       for page, shot, expected in pages]
            for future in renders:
                future.result()
    print(f"screenshots: {ARTIFACTS / 'runs.png'} {ARTIFACTS / 'model.png'}")
