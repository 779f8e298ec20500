"""`ray job submit --working-dir . -- python workflows/tune_dve.py ...` against a local `ray start --head`."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import tiny_dve_flags
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A real Ray head from the project environment, in its own process group (no global `ray stop`)."""
    # Token authentication, as the README tells users to run it: a token in this HOME's ~/.ray/auth_token,
    # shared by the head and the `ray job submit` client. (A local ray.init() earlier in the session also
    # turns RAY_AUTH_MODE=token on in this process's environment.)
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    token = (tmp_path / ".ray" / "auth_token").read_text().strip()
    dashboard = _free_port()
    # Ray keeps Unix sockets under its temp dir: pytest's long tmp paths overflow the 107-byte limit.
    temp_dir = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")
    log = tmp_path / "ray-start.log"
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats", "--num-cpus", "2",
         "--port", str(_free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--ray-client-server-port", str(_free_port()), "--dashboard-agent-listen-port", str(_free_port()),
         "--temp-dir", temp_dir],
        env=env, start_new_session=True, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dashboard}"
    try:  # the head's whole group goes, also when it never came up (a failed start left Ray running)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(f"{address}/api/version",
                                                 headers={"Authorization": f"Bearer {token}"})
                urllib.request.urlopen(request, timeout=2)
                break
            except OSError:
                assert head.poll() is None, f"ray start exited early:\n{log.read_text()[-3000:]}"
                time.sleep(1)
        else:
            pytest.fail("the Ray dashboard did not come up within 120 s")
        yield address, env
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing left of the group
            os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(660)  # `ray job submit` may take its 600 s
def test_tune_dve_as_a_ray_job(ray_head, tiny_synthetic, tmp_path):
    address, env = ray_head
    home = tmp_path / "reid"
    sets = tiny_dve_flags()
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(ROOT),
               "--runtime-env-json", f'{{"env_vars": {{"REID_HOME": "{home}"}}}}', "--",
               "python", "workflows/tune_dve.py", "--species", "tiger", "--manifest", tiny_synthetic,
               "--num-samples", "2", "--epochs", "1", "--bound", "optim.lr=0.0003:0.003", *sets]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in output, output[-4000:]
    assert "reid-dve-tiger v1" in output  # the summary table printed by the job

    store = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(store, registry_uri=store)
    version = client.get_model_version_by_alias("reid-dve-tiger", "candidate")
    assert int(version.version) == 1
    experiment = client.get_experiment_by_name("reid-dve")
    assert experiment.artifact_location == (home / "mlartifacts" / "reid-dve").as_uri()
    runs = client.search_runs([experiment.experiment_id])
    assert sum(1 for r in runs if "mlflow.parentRunId" in r.data.tags) == 2
