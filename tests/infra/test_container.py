"""The compose stack and its image, read as files: no Docker engine, nor any
service, needed. `make test` also validates the compose file with the compose
client and lints the Dockerfile (hadolint)."""

import re
import subprocess
import sys
import tomllib
from typing import Any

import pytest
import yaml

from tests.infra.support import ROOT

DOCKERFILE = ROOT / "infra" / "Dockerfile"
REQUIREMENTS = ROOT / "infra" / "requirements.py"
# Folders the image runs from; the dependency layer must come before them.
CODE = ("config", "jobs", "workers", "ml", "lubdub_client")


@pytest.fixture(scope="session", autouse=True)
def _bucket() -> None:
    """Files only: no database or storage (the suite-wide fixture is replaced)."""
    return None


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined), as (KEYWORD, arguments)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_it_starts_the_app_services_only_after_migrate_succeeded() -> None:
    services = compose()["services"]
    app = [name for name, service in services.items() if "build" in service]
    assert {"migrate", "web", "worker", "worker-interactive", "beat", "flower"} <= set(app)

    for name in app:
        depends_on = services[name]["depends_on"]
        if name == "migrate":
            assert "migrate" not in depends_on
            assert depends_on["postgres"]["condition"] == "service_healthy"
        else:
            assert depends_on["migrate"] == {"condition": "service_completed_successfully"}, name
    assert services["migrate"]["restart"] == "no"


def test_it_pins_every_image_it_pulls() -> None:
    for name, service in compose()["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag, f"{name}: {image} has no tag"
        # A release, not a moving tag: latest, or a bare major version.
        assert tag != "latest", f"{name}: {image}"
        assert re.match(r"^(\d+\.\d+[.\w-]*|RELEASE\.\d{4}-\d\d-\d\dT[\w-]+Z)$", tag), f"{name}: {image}"

    base = next(arguments for keyword, arguments in instructions() if keyword == "FROM")
    assert re.match(r"^python:3\.11\.\d+-slim-bookworm$", base), base


def test_it_installs_the_dependencies_before_the_code_and_the_code_once() -> None:
    steps = instructions()
    install = next(
        index
        for index, (keyword, arguments) in enumerate(steps)
        if keyword == "RUN" and "infra/requirements.py server" in arguments
    )
    copies = [index for index, (keyword, arguments) in enumerate(steps) if keyword == "COPY"]
    code_copies = [index for index in copies if steps[index][1].split()[0] in CODE]
    assert code_copies and install < min(code_copies)
    assert all(
        steps[index][1].split()[0] in {"pyproject.toml", "infra/requirements.py"}
        for index in copies
        if index < install
    )

    # No `pip install .` (a second copy of the code in site-packages): the code
    # runs from /app, on PYTHONPATH.
    for keyword, arguments in steps:
        if keyword == "RUN" and "pip install" in arguments:
            assert "--requirement" in arguments and not re.search(
                r"pip install\s+(-e\s+)?['\"]?\.", arguments
            )
    assert any(keyword == "ENV" and "PYTHONPATH=/app" in arguments for keyword, arguments in steps)


def test_it_gives_the_image_user_its_model_cache() -> None:
    steps = instructions()
    user = [arguments for keyword, arguments in steps if keyword == "USER"][-1]
    assert user.split(":")[0] == "1000"
    assert any(keyword == "RUN" and "--uid 1000" in arguments for keyword, arguments in steps)
    # The settings' default cache is var/models under the code folder (/app).
    assert 'str(BASE_DIR / "var" / "models")' in (ROOT / "config" / "settings" / "base.py").read_text()
    owned = [
        arguments
        for keyword, arguments in steps
        if keyword == "RUN" and re.search(r"install -d -o lubdub -g lubdub [^&]*\bvar/models\b", arguments)
    ]
    assert owned, "var/models is not created for the image's user"


def test_it_keeps_environments_state_and_secrets_out_of_the_build_context() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".venv", ".services", ".env", "var", ".git"} <= ignored


def test_the_dependency_layer_is_the_server_extra_without_the_project() -> None:
    result = subprocess.run(
        [sys.executable, str(REQUIREMENTS), "server"], capture_output=True, text=True, check=True
    )
    printed = result.stdout.split()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    assert sorted(printed) == sorted(
        line for line in extras["server"] + extras["client"] if not line.startswith("lubdub[")
    )
    assert all("==" in line for line in printed)
    assert not any(line.startswith("lubdub") and not line.startswith("lubdub-") for line in printed)


def test_an_unknown_extra_is_refused() -> None:
    result = subprocess.run([sys.executable, str(REQUIREMENTS), "serverr"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "no extra 'serverr'" in result.stderr
