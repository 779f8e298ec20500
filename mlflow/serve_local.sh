#!/usr/bin/env bash
# The MLflow UI on the embedded store (SQLite + local artifacts), bound to 127.0.0.1, lean settings.
set -euo pipefail
cd "$(dirname "$0")/.."
REID_HOME="${REID_HOME:-$HOME/.reid}"
mkdir -p "$REID_HOME/mlartifacts"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
echo "MLflow UI: http://127.0.0.1:${MLFLOW_PORT:-5000}  (store: $REID_HOME/mlflow.db)"
exec .venv/bin/mlflow server \
  --backend-store-uri "sqlite:///$REID_HOME/mlflow.db" \
  --artifacts-destination "$REID_HOME/mlartifacts" \
  --host 127.0.0.1 --port "${MLFLOW_PORT:-5000}" --workers 1
