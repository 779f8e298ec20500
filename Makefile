# Bootstraps everything from python3 + make: a project-local uv, then .venv synced from uv.lock.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Byte-code caching saves ~10 s of recompilation per process on the heavy imports (torch, ray, mlflow).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup demo test lint ui bench clean

setup: $(VENV)/.synced

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	touch $@

demo: setup
	$(PY) workflows/demo.py

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

ui: setup
	bash mlflow/serve_local.sh

bench: setup
	$(PY) benchmarks/eval_speed.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache
