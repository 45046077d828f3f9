#!/usr/bin/env bash
# The whole check, as CI runs it: lint (infra/lint.sh), migrations, tests
# against real PostgreSQL, Redis and S3-API server processes. Services this
# script starts are stopped again at the end; services that were already up
# are left alone. Arguments go to pytest (`make test-fast`: -m "not slow").
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN="$ROOT/.venv/bin"

started=0
if ! infra/services.sh running 2>/dev/null; then
  started=1
fi
cleanup() { [ "$started" -eq 1 ] && infra/services.sh down || true; }
trap cleanup EXIT
infra/services.sh up

set -a
# shellcheck source=/dev/null
. .services/env
set +a
export DJANGO_SETTINGS_MODULE=config.settings.test
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2

infra/lint.sh
echo "== migrations"
"$BIN/python" manage.py makemigrations --check --dry-run >/dev/null \
  || { echo "models changed without a migration: run manage.py makemigrations" >&2; exit 1; }
echo "== docker compose config"
infra/compose-check.sh
echo "== browser"
infra/browser.sh
echo "== pytest"
"$BIN/pytest" "$@"
