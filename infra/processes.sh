#!/usr/bin/env bash
# Start or stop the application processes on this machine, in the background:
# web (gunicorn), a bulk worker, an interactive worker, beat and Flower.
# Logs: var/log/<process>.log; pid files: var/run/.
#
#   infra/processes.sh up     services, migrations, processes; waits until they answer
#   infra/processes.sh down   stops the processes (services stay up)
#
# `up` restarts a running process whose configuration changed since it started
# (a service moved to another port, a new secret, another LUBDUB_ENV_FILE): it
# would keep the old URLs otherwise. A port taken by another process is
# replaced in .services/app.env, and the change is printed.
#
# LUBDUB_ENV_FILE=FILE layers FILE's settings over .services/env (make bench
# uses it to run the app once more on filesystem storage and a database of its own).
# LUBDUB_SERVICES_DIR (as for infra/services.sh) and LUBDUB_VAR_DIR move the
# state folder and var/ (logs, pid files) elsewhere, e.g. for a second copy.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV="$ROOT/.venv"
STATE="${LUBDUB_SERVICES_DIR:-$ROOT/.services}"
VAR="${LUBDUB_VAR_DIR:-$ROOT/var}"
RUN="$VAR/run"
LOG="$VAR/log"
APP_ENV="$STATE/app.env"
PROCESSES="web worker-bulk worker-interactive beat flower"
mkdir -p "$RUN" "$LOG"

say() { printf '[lubdub] %s\n' "$*" >&2; }
die() { printf '[lubdub] error: %s\n' "$*" >&2; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(head -n1 "$1")" 2>/dev/null; }
netcheck() { python3 "$ROOT/infra/netcheck.py" "$@"; }

load_env() {
  [ -f "$STATE/env" ] || die "services are not running: run 'make services' first"
  set -a
  # shellcheck source=/dev/null
  . "$STATE/env"
  # shellcheck source=/dev/null
  if [ -f "$APP_ENV" ]; then . "$APP_ENV"; fi
  # LUBDUB_ENV_FILE: settings layered on top, e.g. another database or storage.
  # shellcheck source=/dev/null
  if [ -n "${LUBDUB_ENV_FILE:-}" ]; then . "$LUBDUB_ENV_FILE"; fi
  set +a
  export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings.base}"
  # A var/ of its own holds everything the app writes locally, not only logs.
  if [ -n "${LUBDUB_VAR_DIR:-}" ]; then
    export DJANGO_STATIC_ROOT="${DJANGO_STATIC_ROOT:-$VAR/static}" LUBDUB_MODEL_CACHE="${LUBDUB_MODEL_CACHE:-$VAR/models}" \
      LUBDUB_MEDIA_ROOT="${LUBDUB_MEDIA_ROOT:-$VAR/media}"
  fi
  # Worker processes scale with processes, not threads (see config/celery_app.py).
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2
}

# What a process was started with: the settings files' contents and the
# variables the start commands read. Kept in var/run/<name>.config.
config_of() {
  local name=$1
  {
    echo "process=$name"
    cat "$STATE/env"
    [ -z "${LUBDUB_ENV_FILE:-}" ] || { echo "LUBDUB_ENV_FILE=$LUBDUB_ENV_FILE"; cat "$LUBDUB_ENV_FILE"; }
    echo "DJANGO_SETTINGS_MODULE=$DJANGO_SETTINGS_MODULE"
    case $name in
      web) echo "port=${LUBDUB_WEB_PORT:-} workers=${LUBDUB_WEB_WORKERS:-2} threads=${LUBDUB_WEB_THREADS:-8}" ;;
      flower) echo "port=${LUBDUB_FLOWER_PORT:-}" ;;
    esac
  } | sha256sum | cut -d' ' -f1
}

started() { config_of "$1" > "$RUN/$1.config"; }

# Stop the running processes whose configuration is not the current one; a
# process from before configurations were recorded counts as changed.
restart_changed() {
  local name
  for name in $PROCESSES; do
    alive "$RUN/$name.pid" || continue
    [ "$(cat "$RUN/$name.config" 2>/dev/null)" = "$(config_of "$name")" ] && continue
    say "$name: its configuration changed since it started: restarting it"
    stop_pidfile "$name"
  done
}

# Set KEY=VALUE in app.env, keeping its other lines.
set_app_env() {
  local key=$1 value=$2
  { grep -v "^$key=" "$APP_ENV" 2>/dev/null || true; echo "$key=$value"; } > "$APP_ENV.tmp"
  mv "$APP_ENV.tmp" "$APP_ENV"
  export "$key=$value"
}

# The port of a process that is not running: kept while free, else replaced
# (and said) before it starts, so it neither fails to bind nor lets its
# readiness check be answered by whoever holds the port.
choose_port() {
  local name=$1 key=$2 default=$3 other=$4 kept port
  alive "$RUN/$name.pid" && return
  kept=$(sed -n "s/^$key=//p" "$APP_ENV" 2>/dev/null | tail -n1 || true)
  port=$(netcheck pick --label "[lubdub] $name" --avoid "$other,$(service_ports)" "${kept:-$default}")
  [ "$port" = "$kept" ] || set_app_env "$key" "$port"
}

# The ports of the services started from this state folder, stopped or not.
service_ports() { cat "$STATE/pg/port" "$STATE/redis/port" "$STATE/s3/port" 2>/dev/null | paste -sd, - || true; }

# start_worker NAME CONCURRENCY QUEUE-OPTION...: the queues are named in
# jobs/services/queue.py; a worker takes them all but those it excludes (-X), or
# those it names (-Q).
start_worker() {
  local name=$1 concurrency=$2
  shift 2
  alive "$RUN/$name.pid" && return
  rm -f "$RUN/$name.pid"
  "$VENV/bin/celery" -A config worker -n "$name@%h" "$@" -c "$concurrency" \
    --loglevel INFO --logfile "$LOG/$name.log" --pidfile "$RUN/$name.pid" --detach
  started "$name"
}

up() {
  load_env
  restart_changed
  choose_port web LUBDUB_WEB_PORT 8000 "${LUBDUB_FLOWER_PORT:-}"
  choose_port flower LUBDUB_FLOWER_PORT 5555 "$LUBDUB_WEB_PORT"
  "$VENV/bin/python" manage.py migrate --noinput >"$LOG/migrate.log" 2>&1 || { tail -n 30 "$LOG/migrate.log" >&2; die "migrations failed"; }
  "$VENV/bin/python" manage.py collectstatic --noinput >/dev/null
  # On S3 the upload page sends parts straight to the bucket, whose CORS rule
  # prepare_storage sets: for this web's own origins unless the settings name some.
  local origins="${LUBDUB_STORAGE_CORS_ORIGINS:-}"
  if [ -z "$origins${DJANGO_CSRF_TRUSTED_ORIGINS:-}${LUBDUB_PUBLIC_URL:-}" ]; then
    origins="http://127.0.0.1:$LUBDUB_WEB_PORT,http://localhost:$LUBDUB_WEB_PORT"
  fi
  LUBDUB_STORAGE_CORS_ORIGINS="$origins" "$VENV/bin/python" manage.py prepare_storage >>"$LOG/migrate.log" 2>&1 \
    || { tail -n 30 "$LOG/migrate.log" >&2; die "storage is not usable"; }
  "$VENV/bin/python" manage.py ensure_default_model >>"$LOG/migrate.log" 2>&1 || { tail -n 30 "$LOG/migrate.log" >&2; die "no default model could be registered"; }
  if ! alive "$RUN/web.pid"; then
    rm -f "$RUN/web.pid"
    # Threads, not sync workers: a request waiting on a slow dependency holds one
    # thread, not a whole worker, so other pages keep answering. A daemon's
    # stderr is /dev/null: --capture-output sends Django's tracebacks to web.log.
    "$VENV/bin/gunicorn" config.wsgi -b "127.0.0.1:$LUBDUB_WEB_PORT" \
      --worker-class gthread --workers "${LUBDUB_WEB_WORKERS:-2}" --threads "${LUBDUB_WEB_THREADS:-8}" \
      --timeout 900 --daemon --pid "$RUN/web.pid" --access-logfile "$LOG/web-access.log" \
      --error-logfile "$LOG/web.log" --capture-output
    started web
  fi
  # Every queue but the interactive one, which has a worker of its own so that
  # single-file uploads overtake bulk work.
  start_worker worker-bulk 2 -X interactive
  start_worker worker-interactive 1 -Q interactive
  if ! alive "$RUN/beat.pid"; then
    "$VENV/bin/celery" -A config beat --loglevel INFO --logfile "$LOG/beat.log" \
      --pidfile "$RUN/beat.pid" --schedule "$RUN/celerybeat-schedule" --detach
    started beat
  fi
  if ! alive "$RUN/flower.pid"; then
    # Flower reads FLOWER_BASIC_AUTH from the (exported) environment: on the
    # command line the password would show in every process list.
    [ -n "${FLOWER_BASIC_AUTH:-}" ] || die "FLOWER_BASIC_AUTH is not set (see .services/env)"
    nohup "$VENV/bin/celery" -A config flower --address=127.0.0.1 --port="$LUBDUB_FLOWER_PORT" \
      >"$LOG/flower.log" 2>&1 &
    echo $! > "$RUN/flower.pid"
    started flower
  fi
  # Each check needs the answer to come from the process's own socket: another
  # process on the same port would answer it too.
  netcheck wait --label "[lubdub] web" --pidfile "$RUN/web.pid" --port "$LUBDUB_WEB_PORT" \
    --url "http://127.0.0.1:$LUBDUB_WEB_PORT/healthz" --timeout 60 \
    || die "web did not answer at http://127.0.0.1:$LUBDUB_WEB_PORT/healthz (see $LOG/web.log)"
  # The credentials come from the environment (FLOWER_BASIC_AUTH), not arguments.
  netcheck wait --label "[lubdub] flower" --pidfile "$RUN/flower.pid" --port "$LUBDUB_FLOWER_PORT" \
    --url "http://127.0.0.1:$LUBDUB_FLOWER_PORT/healthcheck" --auth-env FLOWER_BASIC_AUTH --timeout 60 \
    || die "Flower did not answer (see $LOG/flower.log)"
  say "web:    http://127.0.0.1:$LUBDUB_WEB_PORT/  (API: /api/v1/, docs: /api/docs/, health: /healthz)"
  say "flower: http://127.0.0.1:$LUBDUB_FLOWER_PORT/  (user and password: FLOWER_BASIC_AUTH in ${STATE#"$ROOT"/}/env)"
  say "metrics: http://127.0.0.1:$LUBDUB_WEB_PORT/metrics  (Authorization: Bearer \$LUBDUB_METRICS_TOKEN, in ${STATE#"$ROOT"/}/env)"
  say "logs:   ${LOG#"$ROOT"/}/{web,worker-bulk,worker-interactive,beat,flower}.log"
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
  rm -f "$pidfile" "$RUN/$name.config"
}

down() {
  for name in flower beat worker-interactive worker-bulk web; do stop_pidfile "$name"; done
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down" ;;
esac
