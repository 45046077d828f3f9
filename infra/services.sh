#!/usr/bin/env bash
# Start, stop or show the local backing services without Docker:
# PostgreSQL, Redis and an S3-API server, each on a free loopback port, with
# their state under .services/ (git-ignored). Their URLs go to .services/env,
# which the Makefile and the tests read.
#
#   infra/services.sh up      start what is not running (idempotent)
#   infra/services.sh down    stop only what this script started
#   infra/services.sh status  show what runs where
#   infra/services.sh clean   stop them and delete their state: data, ports, passwords
#
# Ports and passwords are chosen on the first start and kept in the state
# folder: after down and up the services come back where the running app
# expects them. A kept port that another process has taken meanwhile is
# replaced, and the change is printed.
#
# PostgreSQL refuses to run as root, so as root it runs as the postgres user,
# who may not be able to enter the checkout (a clone under /root, or any home
# folder only its owner may enter). Its folder (data/, server.log) is then
# /var/tmp/lubdub-postgres/<checkout>-<random>, owned by postgres, and
# pg/home in the state folder links to it; otherwise it is pg/ itself.
#
# Services given by DATABASE_URL, REDIS_URL or S3_ENDPOINT_URL in the
# environment are used as they are and never started or stopped here, unless
# the value is one this script wrote itself (a shell that sourced
# .services/env).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="${LUBDUB_SERVICES_DIR:-$ROOT/.services}"
ENV_FILE="$STATE/env"
VENV="$ROOT/.venv"
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)

say() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

netcheck() { python3 "$ROOT/infra/netcheck.py" "$@"; }

# Ports kept for the services and app processes of this state folder but FILE's:
# a new port must not be one of them, even while its owner is stopped.
other_ports() {
  local file
  for file in "$STATE/pg/port" "$STATE/redis/port" "$STATE/s3/port"; do
    [ "$file" = "$1" ] || cat "$file" 2>/dev/null || true
  done
  sed -n 's/^LUBDUB_[A-Z]*_PORT=//p' "$STATE/app.env" 2>/dev/null || true
}

# The port kept in FILE while it is free; else a new one, said and kept.
kept_port() {
  local label=$1 file=$2 kept port
  kept=$(cat "$file" 2>/dev/null || true)
  port=$(netcheck pick --label "[services] $label" --avoid "$(other_ports "$file" | paste -sd, -)" \
    ${kept:+"$kept"})
  printf '%s\n' "$port" > "$file"
  echo "$port"
}

random_secret() {
  python3 -c 'import secrets, sys; print(secrets.token_urlsafe(int(sys.argv[1])))' "${1:-24}"
}

alive() { [ -f "$1" ] && kill -0 "$(head -n1 "$1")" 2>/dev/null; }

# PostgreSQL's folder: data/ and server.log (see the top of this file).
PG_ELSEWHERE=/var/tmp/lubdub-postgres
pg_home() {
  if [ -L "$STATE/pg/home" ]; then readlink "$STATE/pg/home"; else echo "$STATE/pg"; fi
}

# Write stdin to a file only its owner can read: created under umask 077, so it
# is never world-readable, not even between writing and a chmod.
secret_file() { (umask 077; cat > "$1"); chmod 600 "$1"; }

# Files from before secret_file existed were written 0644.
protect_secrets() {
  local file
  for file in "$STATE/pg/password" "$STATE/postgres.env" "$STATE/redis.env" "$STATE/s3.env" \
    "$STATE/secrets.env" "$STATE/redis/redis.conf" "$STATE/s3/secret" "$OWN" "$ENV_FILE"; do
    if [ -f "$file" ]; then chmod 600 "$file"; fi
  done
}

# Every URL this script wrote for a service of its own, one VAR=value a line.
# A shell that sourced .services/env exports them; they must not read as
# outside services, whether ours are running or stopped.
OWN="$STATE/own-urls"
own() {
  local line="$1=$2"
  grep -qsFx -- "$line" "$OWN" || printf '%s\n' "$line" | (umask 077; cat >> "$OWN")
}
# State folders from before own-urls existed: a running service's URL is ours.
adopt_running() {
  local var=$1 file=$2 pidfile=$3 value
  [ -f "$STATE/$file" ] && alive "$pidfile" || return 0
  value=$(sed -n "s/^$var=//p" "$STATE/$file" | head -n1)
  [ -z "$value" ] || own "$var" "$value"
}
forget_own() {
  local var=$1
  [ -n "${!var:-}" ] && grep -qsFx -- "$var=${!var}" "$OWN" || return 0
  unset "$var"
}
if [ ! -f "$OWN" ]; then
  adopt_running DATABASE_URL postgres.env "$(pg_home)/data/postmaster.pid"
  adopt_running REDIS_URL redis.env "$STATE/redis/redis.pid"
  adopt_running S3_ENDPOINT_URL s3.env "$STATE/s3/s3.pid"
fi
forget_own DATABASE_URL
forget_own REDIS_URL
forget_own S3_ENDPOINT_URL

apt_install() {
  # Install Debian packages when we may; otherwise say exactly what is missing.
  if [ "$(id -u)" -ne 0 ]; then
    die "missing $*; install them with: sudo apt-get install -y $*"
  fi
  say "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -f "$STATE/.apt-updated" ]; then apt-get update -qq >/dev/null && touch "$STATE/.apt-updated"; fi
  # Package scripts may try to start system-wide daemons; we never use those.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

# ---------------------------------------------------------------- PostgreSQL
pg_bindir() {
  local found
  found=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  [ -n "$found" ] && [ -x "$found/initdb" ] && echo "$found"
}

# PostgreSQL refuses to run as root: as root, run it as an unprivileged user.
pg_user() {
  if [ "$(id -u)" -ne 0 ]; then id -un; return; fi
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
  fi
  echo postgres
}

# From /: the server's user may not be able to enter the current folder.
as_pg() {
  local user=$1; shift
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u "$user" -- "$@"); else "$@"; fi
}

postgres_up() {
  if [ -n "${DATABASE_URL:-}" ]; then
    say "PostgreSQL: using DATABASE_URL from the environment"
    echo "DATABASE_URL=$DATABASE_URL" | secret_file "$STATE/postgres.env"; return
  fi
  local home data pidfile port password
  home=$(pg_home); data="$home/data"; pidfile="$data/postmaster.pid"
  if alive "$pidfile" && [ -f "$STATE/pg/password" ]; then
    # Line 4 of postmaster.pid is the port it listens on.
    port=$(sed -n 4p "$pidfile"); echo "$port" > "$STATE/pg/port"
    postgres_env "$port"
    say "PostgreSQL: already running"; return
  fi
  local bin; bin=$(pg_bindir) || true
  if [ -z "$bin" ]; then apt_install postgresql; bin=$(pg_bindir) || die "PostgreSQL binaries not found after install"; fi
  local user; user=$(pg_user)
  mkdir -p "$STATE/pg"
  if [ "$user" != "$(id -un)" ] && [ ! -L "$STATE/pg/home" ] && [ ! -f "$data/PG_VERSION" ]; then
    home=$(pg_home_elsewhere "$user"); data="$home/data"; pidfile="$data/postmaster.pid"
  fi
  [ "$(id -u)" -eq 0 ] && chown -R "$user" "$home"
  if ! as_pg "$user" test -w "$home"; then
    die "user $user cannot write $home: make its parent folders traversable (chmod o+x), or delete $STATE/pg (its database) to have a new one kept where $user can reach it"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    password=$(random_secret 24)
    printf '%s\n' "$password" | secret_file "$STATE/pg/password"
    # initdb reads the password as the server's user, from a file of its own.
    printf '%s\n' "$password" | secret_file "$home/initdb.pw"
    [ "$(id -u)" -eq 0 ] && chown "$user" "$home/initdb.pw"
    as_pg "$user" "$bin/initdb" -D "$data" -U lubdub --auth=scram-sha-256 \
      --pwfile="$home/initdb.pw" -E UTF8 --locale=C.UTF-8 >"$STATE/pg/initdb.log" 2>&1 \
      || { rm -f "$home/initdb.pw"; cat "$STATE/pg/initdb.log" >&2; die "initdb failed"; }
    rm -f "$home/initdb.pw"
  fi
  password=$(cat "$STATE/pg/password")
  port=$(kept_port PostgreSQL "$STATE/pg/port")
  as_pg "$user" "$bin/pg_ctl" -D "$data" -l "$home/server.log" -w -t 60 start \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200" \
    >/dev/null || { tail -n 20 "$home/server.log" >&2; die "PostgreSQL did not start"; }
  netcheck wait --label "[services] PostgreSQL" --pidfile "$pidfile" --port "$port" --timeout 30 \
    || die "PostgreSQL is not the process answering on port $port"
  PGPASSWORD="$password" "$bin/psql" -h 127.0.0.1 -p "$port" -U lubdub -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='lubdub'" | grep -q 1 \
    || PGPASSWORD="$password" "$bin/createdb" -h 127.0.0.1 -p "$port" -U lubdub lubdub
  postgres_env "$port"
  say "PostgreSQL: 127.0.0.1:$port (data in $data)"
}

# A new folder for PostgreSQL that USER can reach whatever the checkout's
# parents allow, linked from pg/home; the state folder it belongs to is
# written beside the data, for whoever finds it there.
pg_home_elsewhere() {
  local user=$1 name home
  install -d -m 0755 "$PG_ELSEWHERE"
  name=${ROOT##*/}; name=${name//[^A-Za-z0-9_.-]/_}; name=${name:0:24}
  home=$(mktemp -d "$PG_ELSEWHERE/$name-XXXXXXXX")
  printf '%s\n' "$STATE" > "$home/state-folder"
  chown -R "$user" "$home"
  ln -s "$home" "$STATE/pg/home"
  echo "$home"
}

postgres_env() {
  local url; url="postgres://lubdub:$(cat "$STATE/pg/password")@127.0.0.1:$1/lubdub"
  echo "DATABASE_URL=$url" | secret_file "$STATE/postgres.env"
  own DATABASE_URL "$url"
}

postgres_down() {
  local data; data="$(pg_home)/data"
  if alive "$data/postmaster.pid"; then
    local bin; bin=$(pg_bindir)
    as_pg "$(pg_user)" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null && say "PostgreSQL: stopped"
  fi
  rm -f "$STATE/postgres.env"
}

# --------------------------------------------------------------------- Redis
redis_up() {
  if [ -n "${REDIS_URL:-}" ]; then
    say "Redis: using REDIS_URL from the environment"
    echo "REDIS_URL=$REDIS_URL" | secret_file "$STATE/redis.env"; return
  fi
  local port password
  # The password is kept in a private config file: on the command line every
  # process list would show it.
  password=$(sed -n 's/^requirepass //p' "$STATE/redis/redis.conf" 2>/dev/null | head -n1 || true)
  if alive "$STATE/redis/redis.pid" && [ -n "$password" ]; then
    port=$(redis_port)
    [ -n "$port" ] || die "Redis runs (pid $(cat "$STATE/redis/redis.pid")) on a port not recorded here: stop it"
    redis_env "$port" "$password"
    say "Redis: already running"; return
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$STATE/redis"
  if [ -z "$password" ]; then
    password=$(random_secret 24)
    echo "requirepass $password" | secret_file "$STATE/redis/redis.conf"
  fi
  port=$(kept_port Redis "$STATE/redis/port")
  rm -f "$STATE/redis/redis.pid"
  redis-server "$STATE/redis/redis.conf" --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$STATE/redis" \
    --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log" \
    --save "" --appendonly no >/dev/null
  netcheck wait --label "[services] Redis" --pidfile "$STATE/redis/redis.pid" --port "$port" --timeout 30 \
    || { tail -n 5 "$STATE/redis/redis.log" >&2; die "Redis did not start on port $port"; }
  for _ in $(seq 50); do
    REDISCLI_AUTH="$password" redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  redis_env "$port" "$password"
  say "Redis: 127.0.0.1:$port"
}

# The port of the running Redis; state folders from before redis/port existed
# have it in the redis.env of that run.
redis_port() {
  if [ ! -s "$STATE/redis/port" ]; then
    sed -n 's#^REDIS_URL=.*:\([0-9]*\)/[0-9]*$#\1#p' "$STATE/redis.env" 2>/dev/null > "$STATE/redis/port" || true
  fi
  cat "$STATE/redis/port"
}

redis_env() {
  local url="redis://:$2@127.0.0.1:$1/0"
  echo "REDIS_URL=$url" | secret_file "$STATE/redis.env"
  own REDIS_URL "$url"
}

redis_down() {
  if alive "$STATE/redis/redis.pid"; then
    kill "$(cat "$STATE/redis/redis.pid")" && say "Redis: stopped"
  fi
  rm -f "$STATE/redis.env"
}

# ------------------------------------------------------------- S3-API server
s3_up() {
  if [ -n "${S3_ENDPOINT_URL:-}" ]; then
    say "S3: using S3_ENDPOINT_URL from the environment"
    {
      echo "S3_ENDPOINT_URL=$S3_ENDPOINT_URL"
      echo "S3_BUCKET=${S3_BUCKET:-lubdub}"
      [ -z "${S3_CREATE_BUCKET:-}" ] || echo "S3_CREATE_BUCKET=$S3_CREATE_BUCKET"
      [ -z "${AWS_ACCESS_KEY_ID:-}" ] || echo "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
      [ -z "${AWS_SECRET_ACCESS_KEY:-}" ] || echo "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
    } | secret_file "$STATE/s3.env"; return
  fi
  local port
  mkdir -p "$STATE/s3"
  # State folders from before s3/port and s3/secret existed: the running
  # server's settings are in the s3.env of that run.
  if alive "$STATE/s3/s3.pid" && [ -f "$STATE/s3.env" ]; then
    [ -s "$STATE/s3/port" ] || sed -n 's#^S3_ENDPOINT_URL=.*:\([0-9]*\)$#\1#p' "$STATE/s3.env" > "$STATE/s3/port"
    [ -s "$STATE/s3/secret" ] || sed -n 's/^AWS_SECRET_ACCESS_KEY=//p' "$STATE/s3.env" | secret_file "$STATE/s3/secret"
  fi
  [ -s "$STATE/s3/secret" ] || random_secret 24 | secret_file "$STATE/s3/secret"
  if alive "$STATE/s3/s3.pid" && [ -s "$STATE/s3/port" ]; then
    s3_env "$(cat "$STATE/s3/port")"
    say "S3: already running"; return
  fi
  [ -x "$VENV/bin/moto_server" ] || die "the S3-API server is installed with the project: run 'make install' first"
  port=$(kept_port S3 "$STATE/s3/port")
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$STATE/s3/s3.log" 2>&1 &
  echo $! > "$STATE/s3/s3.pid"
  netcheck wait --label "[services] S3" --pid "$(cat "$STATE/s3/s3.pid")" --port "$port" \
    --url "http://127.0.0.1:$port/moto-api/" --timeout 60 \
    || { tail -n 5 "$STATE/s3/s3.log" >&2; die "the S3-API server did not start on port $port"; }
  s3_env "$port"
  say "S3: http://127.0.0.1:$port (moto server, in memory)"
}

s3_env() {
  {
    echo "S3_ENDPOINT_URL=http://127.0.0.1:$1"
    echo "S3_BUCKET=lubdub"
    echo "S3_CREATE_BUCKET=1"
    echo "AWS_ACCESS_KEY_ID=lubdub-local"
    echo "AWS_SECRET_ACCESS_KEY=$(cat "$STATE/s3/secret")"
  } | secret_file "$STATE/s3.env"
  own S3_ENDPOINT_URL "http://127.0.0.1:$1"
}

s3_down() {
  if alive "$STATE/s3/s3.pid"; then kill "$(cat "$STATE/s3/s3.pid")" && say "S3: stopped"; fi
  rm -f "$STATE/s3/s3.pid" "$STATE/s3.env"
}

# ---------------------------------------------------------------- env file
secrets_env() {
  if [ ! -f "$STATE/secrets.env" ]; then
    {
      echo "DJANGO_SECRET_KEY=$(random_secret 48)"
      echo "FLOWER_BASIC_AUTH=admin:$(random_secret 12)"
    } | secret_file "$STATE/secrets.env"
  fi
  # The bearer token Prometheus sends to /metrics; state folders from before it
  # existed get one, their other secrets kept.
  if ! grep -q '^LUBDUB_METRICS_TOKEN=.' "$STATE/secrets.env"; then
    { grep -v '^LUBDUB_METRICS_TOKEN=' "$STATE/secrets.env" || true; echo "LUBDUB_METRICS_TOKEN=$(random_secret 32)"; } \
      | secret_file "$STATE/secrets.env.tmp"
    mv "$STATE/secrets.env.tmp" "$STATE/secrets.env"
    say "metrics token generated: LUBDUB_METRICS_TOKEN in ${ENV_FILE#"$ROOT"/} (/metrics wants 'Authorization: Bearer <token>')"
  fi
}

write_env() {
  cat "$STATE"/secrets.env "$STATE"/postgres.env "$STATE"/redis.env "$STATE"/s3.env | secret_file "$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

case "${1:-up}" in
  up)
    protect_secrets; secrets_env; postgres_up; redis_up; s3_up; write_env
    say "environment written to ${ENV_FILE#"$ROOT"/}"
    ;;
  down)
    s3_down; redis_down; postgres_down; rm -f "$ENV_FILE"
    ;;
  running)
    # Exit 0 when everything this script manages is up (used by `make test`).
    [ -f "$ENV_FILE" ] || exit 1
    [ -n "${DATABASE_URL:-}" ] || alive "$(pg_home)/data/postmaster.pid" || exit 1
    [ -n "${REDIS_URL:-}" ] || alive "$STATE/redis/redis.pid" || exit 1
    [ -n "${S3_ENDPOINT_URL:-}" ] || alive "$STATE/s3/s3.pid" || exit 1
    ;;
  status)
    for f in postgres redis s3; do
      if [ -f "$STATE/$f.env" ]; then sed -E 's#(://[^:]*:)[^@]*@#\1***@#' "$STATE/$f.env" | grep -E 'URL'; else echo "$f: not running"; fi
    done
    [ ! -d "$(pg_home)/data" ] || echo "PostgreSQL data: $(pg_home)/data"
    ;;
  clean)
    # Everything down and forgotten; PostgreSQL's folder elsewhere too.
    s3_down; redis_down; postgres_down
    home=$(pg_home)
    case $home in "$PG_ELSEWHERE"/*) rm -rf "$home" ;; esac
    rm -rf "$STATE"
    say "stopped; state deleted"
    ;;
  *) die "usage: $0 up|down|running|status|clean" ;;
esac
