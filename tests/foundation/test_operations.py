"""How the processes run: logs that keep tracebacks, secrets kept out of sight."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = (ROOT / "infra" / "processes.sh").read_text()
COMPOSE = (ROOT / "docker-compose.yml").read_text()


def _gunicorn_command() -> str:
    """The gunicorn invocation of infra/processes.sh, continuation lines joined."""
    joined = PROCESSES.replace("\\\n", " ")
    [line] = [line for line in joined.splitlines() if "bin/gunicorn" in line]
    return re.sub(r"\s+", " ", line)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_it_runs_the_daemonised_web_server_with_its_output_in_web_log() -> None:
    command = _gunicorn_command()

    # A daemon's stderr is /dev/null: without --capture-output, 500s vanish.
    assert "--daemon" in command
    assert "--capture-output" in command
    assert '--error-logfile "$LOG/web.log"' in command


def test_it_serves_the_web_with_threads_sized_from_the_environment() -> None:
    command = _gunicorn_command()

    assert "--worker-class gthread" in command
    assert '--workers "${LUBDUB_WEB_WORKERS:-2}"' in command
    assert '--threads "${LUBDUB_WEB_THREADS:-8}"' in command
    assert "--worker-class=gthread" in COMPOSE and "--threads=${LUBDUB_WEB_THREADS:-8}" in COMPOSE


def test_it_logs_unhandled_request_errors_with_their_traceback_to_stderr() -> None:
    script = (
        "import django, logging; django.setup()\n"
        "try:\n    raise RuntimeError('boom in a view')\n"
        "except RuntimeError:\n"
        "    logging.getLogger('django.request').error('Internal Server Error: /api/v1/x/', exc_info=True)\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DJANGO_SECRET_KEY": "x" * 50,
        # Operators who quieten the logs still get the 500s.
        "LUBDUB_LOG_LEVEL": "CRITICAL",
    }

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert "ERROR django.request Internal Server Error: /api/v1/x/" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: boom in a view" in result.stderr


def test_it_keeps_the_flower_password_off_command_lines() -> None:
    assert "--basic-auth" not in PROCESSES
    assert "--basic-auth" not in COMPOSE
    # Not as an argument of the readiness check either.
    assert '"$FLOWER_BASIC_AUTH"' not in PROCESSES
    assert "--requirepass" not in (ROOT / "infra" / "services.sh").read_text()


def test_it_writes_the_service_secrets_readable_by_their_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "services"
    # Services given by URL are only written down, never started.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LUBDUB_SERVICES_DIR": str(state),
        "DATABASE_URL": "postgres://lubdub:db-secret@127.0.0.1:9/lubdub",
        "REDIS_URL": "redis://:redis-secret@127.0.0.1:9/0",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "s3-secret",
    }

    result = subprocess.run(
        ["bash", "-c", "umask 022; exec infra/services.sh up"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    for name in ("env", "secrets.env", "postgres.env", "redis.env", "s3.env"):
        assert _mode(state / name) == 0o600, name
    assert "s3-secret" in (state / "env").read_text()


def test_it_keeps_the_local_database_password_private() -> None:
    password = ROOT / ".services" / "pg" / "password"
    if not password.exists():
        pytest.skip("PostgreSQL was not started by infra/services.sh here")
    assert _mode(password) == 0o600
    assert _mode(ROOT / ".services" / "env") == 0o600
