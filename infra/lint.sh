#!/usr/bin/env bash
# The static checks, for `make lint` and `make test`: ruff (lint, with unused
# noqa comments reported, and the formatter's check), mypy, shellcheck on the
# shell scripts and hadolint on the Dockerfile. All of them come with the
# project's dev dependencies (pyproject.toml). mypy loads the Django settings:
# run it with the services' environment (.services/env) exported.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN="$ROOT/.venv/bin"

echo "== ruff"
"$BIN/ruff" check .
"$BIN/ruff" format --check .
echo "== mypy"
"$BIN/mypy"
echo "== shellcheck"
"$BIN/shellcheck" infra/*.sh .ci/run
echo "== hadolint"
"$BIN/hadolint" infra/Dockerfile
