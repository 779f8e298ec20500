# Bootstraps everything from python3 + make: a project-local uv, then .venv synced from uv.lock.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(VENV)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# Byte-code caching saves ~10 s of recompilation per process on the heavy imports (torch, ray, mlflow).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup browser demo test test-fast lint ui bench clean

setup: $(VENV)/.synced

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	touch $@

# Debian's Chromium for the headless UI test (tests/test_mlflow_server.py), installed only when missing.
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the headless UI test"; \
	  command -v apt-get >/dev/null || { echo "no apt-get: install Chromium yourself and put it on PATH as 'chromium'" >&2; exit 1; }; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

demo: setup
	$(PY) workflows/demo.py

test: setup browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --durations=25

# The fast lane: everything but the `slow` tests (no Ray, moto, MLflow server, browser or real training).
test-fast: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow" --durations=10

lint: setup
	$(VENV)/bin/ruff check .

ui: setup
	bash mlflow/serve_local.sh

bench: setup
	$(PY) benchmarks/eval_speed.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache
