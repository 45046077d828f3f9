#!/usr/bin/env bash
# Validate docker-compose.yml with the compose client (no engine needed).
# Uses a throwaway .env with random values when none exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
elif [ "$(id -u)" -eq 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
  compose=(docker-compose)
else
  echo "compose client missing: sudo apt-get install docker-compose" >&2; exit 1
fi

if [ ! -f .env ]; then
  trap 'rm -f .env' EXIT
  python3 - <<'PY'
import secrets
lines = open(".env.example").read().splitlines()
with open(".env", "w") as out:
    for line in lines:
        if line.endswith("=") or line.endswith(":"):
            line += secrets.token_urlsafe(16)
        out.write(line + "\n")
PY
fi
"${compose[@]}" config -q
echo "docker-compose.yml is valid"
