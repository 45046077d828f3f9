#!/usr/bin/env bash
# make bench: the model benchmark, then the platform end to end twice, each pass
# followed by the storage-layout benchmark (bench/storage_layouts.py, docs/storage.md):
#   1. as `make up` runs it, with the S3-API server of .services (moto, a Python
#      program on the same two cores as everything else);
#   2. on filesystem storage (the embedded default), with a database of its own
#      so that nothing mixes with the first pass's data.
# Between them, the resumable-upload benchmark on both storages (its own web and
# database, under a minute each).
# The app is restarted as `make up` left it at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
FS_ENV="$ROOT/var/bench/filesystem.env"

# shellcheck source=/dev/null
with_app_env() { (set -a; . .services/env; . .services/app.env; [ -z "${1:-}" ] || . "$1"; set +a; shift; "$@"); }

with_app_env "" "$PY" -m ml bench
with_app_env "" "$PY" manage.py bench --label "S3-API server (moto)"
with_app_env "" "$PY" -m bench.storage_layouts --recordings 600
# A 256 MiB archive through `lubdub submit` with the connection cut twice, on a web,
# database and storage of its own (bench/resumable_upload.py; docs/storage.md).
with_app_env "" "$PY" -m bench.resumable_upload --storage s3
with_app_env "" "$PY" -m bench.resumable_upload --storage filesystem

mkdir -p "$ROOT/var/bench"
rm -rf "$ROOT/var/bench/media"
database=$(with_app_env "" "$PY" - <<'PY'
import os
from urllib.parse import urlsplit, urlunsplit
url = urlsplit(os.environ["DATABASE_URL"])
print(urlunsplit(url._replace(path="/lubdub_bench")))
PY
)
with_app_env "" "$PY" - <<'PY'
# A fresh database for the filesystem pass (the role may create databases).
import os
import psycopg2
connection = psycopg2.connect(os.environ["DATABASE_URL"])
connection.autocommit = True
with connection.cursor() as cursor:
    cursor.execute("DROP DATABASE IF EXISTS lubdub_bench")
    cursor.execute("CREATE DATABASE lubdub_bench")
PY
{
  echo "DATABASE_URL=$database"
  echo "S3_ENDPOINT_URL="
  echo "S3_BUCKET="
  echo "LUBDUB_MEDIA_ROOT=$ROOT/var/bench/media"
} > "$FS_ENV"

restore() { infra/processes.sh down >/dev/null 2>&1 || true; infra/processes.sh up >/dev/null 2>&1 || true; }
trap restore EXIT
infra/processes.sh down >/dev/null
LUBDUB_ENV_FILE="$FS_ENV" infra/processes.sh up >/dev/null
with_app_env "$FS_ENV" "$PY" manage.py bench --label "filesystem storage (the embedded default)"
with_app_env "$FS_ENV" "$PY" -m bench.storage_layouts --recordings 600
