"""cluster/runtime_env.yaml: fields Ray knows, the settings every job needs, no secrets, a small upload,
and a real `ray job submit --runtime-env cluster/runtime_env.yaml` to a local Ray head."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml
from cluster_support import CLUSTER, ROOT, runtime_env_errors

RUNTIME_ENV = CLUSTER / "runtime_env.yaml"
BIN = Path(sys.executable).parent


def runtime_env() -> dict:
    return yaml.safe_load(RUNTIME_ENV.read_text())


def test_runtime_env_is_valid_for_ray():
    assert runtime_env_errors("runtime_env.yaml", RUNTIME_ENV.read_text()) == []


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d.__setitem__("env_var", d.pop("env_vars")), "runtime_env.yaml: (document).env_var: not a runtime_env field"),
    (lambda d: d.__setitem__("exclude", d.pop("excludes")), "(document).exclude: not a runtime_env field"),
    (lambda d: d["config"].__setitem__("setup_timeout_second", d["config"].pop("setup_timeout_seconds")),
     "(document).config.setup_timeout_second: not a runtime_env config key"),
    (lambda d: d["env_vars"].__setitem__("REID_HOME", 5), "(document).env_vars.REID_HOME: must be a string"),
    (lambda d: d.__setitem__("excludes", ".git"), "runtime_env.yaml: (document): TypeError"),
], ids=["env_vars", "excludes", "config-key", "env-value-type", "excludes-type"])
def test_a_mistake_in_the_runtime_env_is_named(mutate, expected):
    document = runtime_env()
    mutate(document)
    errors = runtime_env_errors("runtime_env.yaml", yaml.safe_dump(document))
    assert any(e.startswith("runtime_env.yaml: ") and expected in e for e in errors), errors


def test_runtime_env_sets_what_jobs_need_and_installs_nothing():
    document = runtime_env()
    assert document["working_dir"] == "."
    assert {"REID_HOME", "MLFLOW_TRACKING_URI", "REID_S3_ENDPOINT_URL"} <= set(document["env_vars"])
    assert document["config"]["setup_timeout_seconds"] > 0
    assert not {"pip", "uv", "conda", "py_executable"} & set(document)  # the image holds the locked environment
    # Every path is absolute (a job runs in a temporary working directory).
    assert document["env_vars"]["REID_HOME"].startswith("/")


def test_runtime_env_holds_no_secrets():
    """The runtime env is shown by `ray job list` and the dashboard."""
    for key, value in runtime_env()["env_vars"].items():
        assert not any(w in key.upper() for w in ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY", "SESSION")), key
        assert "@" not in value, f"{key} looks like user:password@host"


def test_the_working_dir_upload_is_small_and_leaves_out_what_jobs_do_not_need(tmp_path):
    from ray._private.runtime_env.packaging import create_package

    package = tmp_path / "package.zip"
    create_package(str(ROOT), package, include_gitignore=True, excludes=runtime_env()["excludes"])
    names = zipfile.ZipFile(package).namelist()
    assert package.stat().st_size < 5 * 2**20, f"{package.stat().st_size} bytes"
    assert "workflows/tune_dve.py" in names and "reid_core/settings.py" in names and "mlflow/serve_production.sh" in names
    for left_out in (".git/", "tests/", ".venv/", ".tools/", "cluster/schemas/", "benchmarks/"):
        assert not any(n.startswith(left_out) for n in names), left_out


# --- a real job ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_head(env: dict, log: Path) -> tuple[subprocess.Popen, str, str]:
    dashboard = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="rayenv-", dir="/tmp")  # Unix socket paths must stay short
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats", "--num-cpus", "1",
         "--port", str(_free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--ray-client-server-port", str(_free_port()), "--dashboard-agent-listen-port", str(_free_port()),
         "--temp-dir", temp_dir],
        env=env, start_new_session=True, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return head, f"http://127.0.0.1:{dashboard}", temp_dir


def _stop_head(head: subprocess.Popen, temp_dir: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=15)  # the job is done: nothing to flush
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def token_ray_head(tmp_path):
    """`ray start --head` from the project environment with token auth, in its own process group.

    Ready means `ray start` printed "Ray runtime started." and the dashboard answers: the dashboard comes
    up before the raylet registers, and `ray start` gives the raylet only 30 s, which a loaded 2-core
    machine can miss; one such start is retried."""
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    token = (tmp_path / ".ray" / "auth_token").read_text().strip()
    for attempt in (1, 2):
        log = tmp_path / f"ray-start-{attempt}.log"
        head, address, temp_dir = _start_head(env, log)
        deadline, ready = time.monotonic() + 150, False
        while time.monotonic() < deadline and head.poll() is None:
            if "Ray runtime started" in log.read_text(errors="replace"):
                with contextlib.suppress(OSError):
                    request = urllib.request.Request(f"{address}/api/version",
                                                     headers={"Authorization": f"Bearer {token}"})
                    urllib.request.urlopen(request, timeout=5)
                    ready = True
                    break
            time.sleep(1)
        if ready:
            break
        _stop_head(head, temp_dir)
        if attempt == 2:
            pytest.fail(f"the Ray head did not start twice:\n{log.read_text(errors='replace')[-3000:]}")
    try:
        yield address, env
    finally:
        _stop_head(head, temp_dir)


PROBE = """
import json, os, pathlib
from reid_core.settings import Settings
s = Settings.from_env()
print("PROBE " + json.dumps({
    "env": {k: os.environ.get(k) for k in ("REID_HOME", "MLFLOW_TRACKING_URI", "REID_S3_ENDPOINT_URL")},
    "home": str(s.home), "tracking": s.tracking_uri, "endpoint": s.s3_endpoint_url,
    "files": sorted(str(p) for p in pathlib.Path(".").glob("*")),
    "tune_dve": pathlib.Path("workflows/tune_dve.py").is_file(),
}))
"""


@pytest.mark.slow
def test_ray_job_submit_with_the_runtime_env(token_ray_head):
    """The file as committed, given to `ray job submit --runtime-env`: the job sees its settings and the
    uploaded working dir without what `excludes` leaves out."""
    address, env = token_ray_head
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--runtime-env", str(RUNTIME_ENV), "--",
               "python", "-c", PROBE]
    deadline = time.monotonic() + 120
    while True:  # the dashboard answers before the node's job agent is up on a busy machine
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        output = done.stdout + done.stderr
        if "No available agent to submit job" not in output or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert done.returncode == 0 and "succeeded" in output, output[-3000:]
    probe = json.loads(next(line for line in output.splitlines() if line.startswith("PROBE "))[6:])
    expected = runtime_env()["env_vars"]
    assert probe["env"] == expected
    assert probe["home"] == expected["REID_HOME"] and probe["tracking"] == expected["MLFLOW_TRACKING_URI"]
    assert probe["endpoint"] is None  # empty means AWS itself
    assert probe["tune_dve"] is True
    assert "tests" not in probe["files"] and "benchmarks" not in probe["files"] and ".git" not in probe["files"]
    assert "reid_core" in probe["files"] and "workflows" in probe["files"]
