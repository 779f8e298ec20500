#!/usr/bin/env bash
# The shared MLflow tracking server: PostgreSQL backend, S3 artifacts proxied through the server,
# MLflow's basic-auth app. Every setting comes from the environment (see mlflow/production.env.example);
# the script refuses to start without real secrets and never prints them.
#
#   set -a; . /etc/reid/mlflow.env; set +a      # your copy of mlflow/production.env.example
#   bash mlflow/serve_production.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

fail() {
  echo "serve_production.sh: $*" >&2
  exit 2
}

# --- secrets: required, not a known default, long enough -------------------------------------------
# password1234 is the admin password older MLflow versions shipped; the others are placeholders.
known_defaults=" password1234 change-me changeme my-secret-key secret password "
check_secret() {  # name, minimum length, how to make one
  local name="$1" min="$2" hint="$3" value="${!1:-}"
  [[ -n "$value" ]] || fail "$name is not set. $hint"
  [[ "$known_defaults" != *" $value "* ]] || fail "$name is set to a well-known default; choose a new value. $hint"
  (( ${#value} >= min )) || fail "$name must be at least $min characters long. $hint"
}
check_secret MLFLOW_AUTH_ADMIN_PASSWORD 12 \
  "It becomes the password of the MLflow admin user the first time the server starts."
check_secret MLFLOW_FLASK_SERVER_SECRET_KEY 32 \
  "Generate one with: python3 -c 'import secrets; print(secrets.token_hex(32))'"

# --- stores --------------------------------------------------------------------------------------
[[ -n "${MLFLOW_BACKEND_STORE_URI:-}" ]] \
  || fail "MLFLOW_BACKEND_STORE_URI is not set (e.g. postgresql://mlflow@db.internal:5432/mlflow)."
[[ -n "${MLFLOW_ARTIFACTS_DESTINATION:-}" ]] \
  || fail "MLFLOW_ARTIFACTS_DESTINATION is not set (e.g. s3://reid-mlflow-artifacts)."
# Show URIs without their passwords (user:password@host).
redact() { sed -E -e 's#(://[^:/@]*):[^@/]*@#\1:***@#' -e 's#([?&]password=)[^&]*#\1***#g' <<<"$1"; }
[[ "$MLFLOW_BACKEND_STORE_URI" == postgresql* ]] \
  || echo "warning: MLFLOW_BACKEND_STORE_URI is $(redact "$MLFLOW_BACKEND_STORE_URI"), not postgresql://" >&2
[[ "$MLFLOW_ARTIFACTS_DESTINATION" == s3://* ]] \
  || echo "warning: MLFLOW_ARTIFACTS_DESTINATION is $MLFLOW_ARTIFACTS_DESTINATION, not s3://" >&2

# --- auth configuration: the template plus the auth database, in a private directory -----------------
if [[ -n "${MLFLOW_AUTH_CONFIG_PATH:-}" ]]; then
  [[ -r "$MLFLOW_AUTH_CONFIG_PATH" ]] || fail "MLFLOW_AUTH_CONFIG_PATH=$MLFLOW_AUTH_CONFIG_PATH is not a readable file."
else
  auth_uri="${MLFLOW_AUTH_DATABASE_URI:-$MLFLOW_BACKEND_STORE_URI}"
  auth_dir="$(mktemp -d -t reid-mlflow-auth.XXXXXXXX)"  # mode 700; kept while the server runs
  # configparser interpolates '%': a URL-encoded password (%40) must be written as %%40.
  (umask 077; { cat "$here/basic_auth.ini"; printf 'database_uri = %s\n' "${auth_uri//%/%%}"; } >"$auth_dir/basic_auth.ini")
  export MLFLOW_AUTH_CONFIG_PATH="$auth_dir/basic_auth.ini"
fi

# --- server --------------------------------------------------------------------------------------
# MLflow's GenAI job runner (huey workers) is not used here and costs ~3 GB; opt in explicitly.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
# MLFLOW_S3_ENDPOINT_URL (S3-compatible stores), AWS_* credentials, MLFLOW_SERVER_ALLOWED_HOSTS and
# MLFLOW_SERVER_CORS_ALLOWED_ORIGINS are read from the environment by MLflow and boto3 directly.
host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"
workers="${MLFLOW_WORKERS:-4}"
mlflow_bin="$root/.venv/bin/mlflow"
[[ -x "$mlflow_bin" ]] || mlflow_bin="$(command -v mlflow)" \
  || fail "no mlflow found; run \`make setup\` (the server extra brings the auth app and the PostgreSQL driver)."

echo "MLflow (production): http://$host:$port  workers=$workers  auth=basic-auth (admin user: ${MLFLOW_AUTH_ADMIN_USERNAME:-admin_username in $MLFLOW_AUTH_CONFIG_PATH})"
echo "  backend: $(redact "$MLFLOW_BACKEND_STORE_URI")"
echo "  artifacts: $MLFLOW_ARTIFACTS_DESTINATION (proxied)${MLFLOW_S3_ENDPOINT_URL:+ via $MLFLOW_S3_ENDPOINT_URL}"
exec "$mlflow_bin" server \
  --app-name basic-auth \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --serve-artifacts --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --host "$host" --port "$port" --workers "$workers"
