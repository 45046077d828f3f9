"""The secrets `infra/services.sh up` generates (what `make services` and `make up`
run first), in a state folder of the test's own, with the shared services given
by the environment so that the script starts none of them."""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.support import ROOT, SERVICES, read_env, run, script_env

SERVICE_SETTINGS = (
    "DATABASE_URL",
    "REDIS_URL",
    "S3_ENDPOINT_URL",
    "S3_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


@pytest.fixture
def state() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="lubdub-secrets-test-")) / ".services"
    try:
        yield folder
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def services_up(state: Path) -> str:
    """`infra/services.sh up` against the shared services; its messages."""
    given = {name: os.environ[name] for name in SERVICE_SETTINGS if name in os.environ}
    assert {"DATABASE_URL", "REDIS_URL"} <= set(given), "run with .services/env exported"
    result = run([SERVICES, "up"], script_env(state, given))
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL: using DATABASE_URL from the environment" in result.stderr  # nothing started
    return result.stderr


def test_it_generates_a_metrics_token_on_first_up_and_keeps_it(state: Path) -> None:
    said = services_up(state)

    token = read_env(state / "env")["LUBDUB_METRICS_TOKEN"]
    assert len(token) >= 32 and token.isascii() and " " not in token
    assert f"metrics token generated: LUBDUB_METRICS_TOKEN in {state / 'env'}" in said
    assert read_env(state / "secrets.env")["LUBDUB_METRICS_TOKEN"] == token
    for name in ("env", "secrets.env"):
        assert (state / name).stat().st_mode & 0o077 == 0, name

    again = services_up(state)

    assert read_env(state / "env")["LUBDUB_METRICS_TOKEN"] == token
    assert "metrics token generated" not in again
    # Where make services keeps it, nothing is ever committed.
    assert subprocess.run(["git", "check-ignore", "-q", ".services/secrets.env"], cwd=ROOT).returncode == 0


def test_a_state_folder_from_before_the_token_gets_one_and_keeps_its_other_secrets(state: Path) -> None:
    state.mkdir(parents=True)
    older = "DJANGO_SECRET_KEY=kept-secret-key-from-an-earlier-version\nFLOWER_BASIC_AUTH=admin:kept\n"
    (state / "secrets.env").write_text(older)
    (state / "secrets.env").chmod(0o600)

    said = services_up(state)

    env = read_env(state / "env")
    assert env["DJANGO_SECRET_KEY"] == "kept-secret-key-from-an-earlier-version"
    assert env["FLOWER_BASIC_AUTH"] == "admin:kept"
    assert len(env["LUBDUB_METRICS_TOKEN"]) >= 32
    assert "metrics token generated" in said


# The web as `make up` starts it: its settings from the generated environment file.
METRICS_REQUESTS = """
import os, django
django.setup()
from django.test import Client
token = os.environ["LUBDUB_METRICS_TOKEN"]
client = Client(HTTP_HOST="127.0.0.1")
for header in ("", "Bearer not-the-generated-token-0000", "Bearer " + token):
    answer = client.get("/metrics", **({"HTTP_AUTHORIZATION": header} if header else {}))
    print(answer.status_code, "lubdub_queue_depth" in answer.content.decode())
"""


def test_the_web_started_with_the_generated_env_serves_metrics_to_its_token_only(state: Path) -> None:
    services_up(state)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("DJANGO_", "LUBDUB_"))}
    env.update(read_env(state / "env"))
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.base"

    answered = subprocess.run(
        [sys.executable, "-c", METRICS_REQUESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.split("\n")[:3] == ["401 False", "401 False", "200 True"]
