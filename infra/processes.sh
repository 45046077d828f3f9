#!/usr/bin/env bash
# Start or stop the application processes on this machine, in the background:
# web (gunicorn), a bulk worker, an interactive worker, beat and Flower.
# Logs: var/log/<process>.log; pid files: var/run/.
#
#   infra/processes.sh up     services, migrations, processes; waits until they answer
#   infra/processes.sh down   stops the processes (services stay up)
#
# LUBDUB_ENV_FILE=FILE layers FILE's settings over .services/env (make bench
# uses it to run the app once more on filesystem storage and a database of its own).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV="$ROOT/.venv"
RUN="$ROOT/var/run"
LOG="$ROOT/var/log"
APP_ENV="$ROOT/.services/app.env"
mkdir -p "$RUN" "$LOG"

say() { printf '[lubdub] %s\n' "$*" >&2; }
die() { printf '[lubdub] error: %s\n' "$*" >&2; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(head -n1 "$1")" 2>/dev/null; }
port_free() { python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }
pick_port() {
  if port_free "$1"; then echo "$1"; else
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  fi
}

load_env() {
  [ -f "$ROOT/.services/env" ] || die "services are not running: run 'make services' first"
  set -a; . "$ROOT/.services/env"; [ -f "$APP_ENV" ] && . "$APP_ENV"
  # LUBDUB_ENV_FILE: settings layered on top, e.g. another database or storage.
  if [ -n "${LUBDUB_ENV_FILE:-}" ]; then . "$LUBDUB_ENV_FILE"; fi
  set +a
  export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings.base}"
  # Worker processes scale with processes, not threads (see config/celery_app.py).
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2
}

wait_for() {
  local url=$1 what=$2
  for _ in $(seq 120); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  die "$what did not answer at $url (see var/log/)"
}

start_worker() {
  local name=$1 queues=$2 concurrency=$3
  alive "$RUN/$name.pid" && return
  "$VENV/bin/celery" -A config worker -n "$name@%h" -Q "$queues" -c "$concurrency" \
    --loglevel INFO --logfile "$LOG/$name.log" --pidfile "$RUN/$name.pid" --detach
}

up() {
  if [ ! -f "$APP_ENV" ]; then
    {
      echo "LUBDUB_WEB_PORT=$(pick_port 8000)"
      echo "LUBDUB_FLOWER_PORT=$(pick_port 5555)"
    } > "$APP_ENV"
  fi
  load_env
  "$VENV/bin/python" manage.py migrate --noinput >"$LOG/migrate.log" 2>&1 || { tail -n 30 "$LOG/migrate.log" >&2; die "migrations failed"; }
  "$VENV/bin/python" manage.py collectstatic --noinput >/dev/null
  "$VENV/bin/python" manage.py prepare_storage >>"$LOG/migrate.log" 2>&1 || { tail -n 30 "$LOG/migrate.log" >&2; die "storage is not usable"; }
  "$VENV/bin/python" manage.py ensure_default_model >>"$LOG/migrate.log" 2>&1 || { tail -n 30 "$LOG/migrate.log" >&2; die "no default model could be registered"; }
  if ! alive "$RUN/web.pid"; then
    # Threads, not sync workers: a request waiting on a slow dependency holds one
    # thread, not a whole worker, so other pages keep answering. A daemon's
    # stderr is /dev/null: --capture-output sends Django's tracebacks to web.log.
    "$VENV/bin/gunicorn" config.wsgi -b "127.0.0.1:$LUBDUB_WEB_PORT" \
      --worker-class gthread --workers "${LUBDUB_WEB_WORKERS:-2}" --threads "${LUBDUB_WEB_THREADS:-8}" \
      --timeout 900 --daemon --pid "$RUN/web.pid" --access-logfile "$LOG/web-access.log" \
      --error-logfile "$LOG/web.log" --capture-output
  fi
  start_worker worker-bulk ingest,analyze,reports,default 2
  # A worker of its own for single-file uploads, so they overtake bulk work.
  start_worker worker-interactive interactive 1
  if ! alive "$RUN/beat.pid"; then
    "$VENV/bin/celery" -A config beat --loglevel INFO --logfile "$LOG/beat.log" \
      --pidfile "$RUN/beat.pid" --schedule "$RUN/celerybeat-schedule" --detach
  fi
  if ! alive "$RUN/flower.pid"; then
    # Flower reads FLOWER_BASIC_AUTH from the (exported) environment: on the
    # command line the password would show in every process list.
    [ -n "${FLOWER_BASIC_AUTH:-}" ] || die "FLOWER_BASIC_AUTH is not set (see .services/env)"
    nohup "$VENV/bin/celery" -A config flower --address=127.0.0.1 --port="$LUBDUB_FLOWER_PORT" \
      >"$LOG/flower.log" 2>&1 &
    echo $! > "$RUN/flower.pid"
  fi
  wait_for "http://127.0.0.1:$LUBDUB_WEB_PORT/healthz" "web"
  python3 - "$LUBDUB_FLOWER_PORT" <<'PY' || die "Flower did not answer (see var/log/flower.log)"
import base64, os, sys, time, urllib.request
port, auth = sys.argv[1], os.environ["FLOWER_BASIC_AUTH"]
request = urllib.request.Request(f"http://127.0.0.1:{port}/healthcheck",
    headers={"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()})
for _ in range(120):
    try:
        urllib.request.urlopen(request, timeout=2); sys.exit(0)
    except Exception:
        time.sleep(0.5)
sys.exit(1)
PY
  say "web:    http://127.0.0.1:$LUBDUB_WEB_PORT/  (API: /api/v1/, docs: /api/docs/, health: /healthz)"
  say "flower: http://127.0.0.1:$LUBDUB_FLOWER_PORT/  (user and password: FLOWER_BASIC_AUTH in .services/env)"
  say "logs:   var/log/{web,worker-bulk,worker-interactive,beat,flower}.log"
}

stop_pidfile() {
  local name=$1 pidfile="$RUN/$1.pid"
  if alive "$pidfile"; then
    local pid; pid=$(head -n1 "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    say "$name: stopped"
  fi
  rm -f "$pidfile"
}

down() {
  for name in flower beat worker-interactive worker-bulk web; do stop_pidfile "$name"; done
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down" ;;
esac
