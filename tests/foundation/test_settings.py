import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "p" * 20 + "Q9!x" * 10 + "z" * 20,
    "DJANGO_ALLOWED_HOSTS": "screening.example.org",
}


def _run_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_refuses_to_start_production_without_a_secret_key() -> None:
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != "DJANGO_SECRET_KEY"}

    result = _run_check(env)

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_it_refuses_production_without_allowed_hosts() -> None:
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != "DJANGO_ALLOWED_HOSTS"}

    result = _run_check(env)

    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS" in result.stderr


def test_it_refuses_debug_in_production() -> None:
    result = _run_check({**PRODUCTION_ENV, "DJANGO_DEBUG": "1"})

    assert result.returncode != 0
    assert "DJANGO_DEBUG" in result.stderr


def test_it_rejects_a_malformed_boolean() -> None:
    result = _run_check(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DJANGO_DEBUG": "maybe",
            "DJANGO_SECRET_KEY": "x" * 50,
        }
    )

    assert result.returncode != 0
    assert "DJANGO_DEBUG='maybe' is not a boolean" in result.stderr


def test_it_passes_the_deployment_checklist_in_production() -> None:
    result = _run_check(PRODUCTION_ENV, "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stderr


def test_it_rejects_a_storage_timeout_that_is_not_a_positive_number() -> None:
    base = {"DJANGO_SETTINGS_MODULE": "config.settings.base", "DJANGO_SECRET_KEY": "x" * 50}

    malformed = _run_check({**base, "LUBDUB_STORAGE_READ_TIMEOUT_S": "ten"})
    negative = _run_check({**base, "LUBDUB_STORAGE_CONNECT_TIMEOUT_S": "-1"})
    no_attempt = _run_check({**base, "LUBDUB_STORAGE_MAX_ATTEMPTS": "0"})

    assert "LUBDUB_STORAGE_READ_TIMEOUT_S='ten' is not a number of seconds" in malformed.stderr
    assert "LUBDUB_STORAGE_CONNECT_TIMEOUT_S='-1' must be a positive number" in negative.stderr
    assert "LUBDUB_STORAGE_MAX_ATTEMPTS='0' must be at least 1" in no_attempt.stderr
    assert malformed.returncode and negative.returncode and no_attempt.returncode
