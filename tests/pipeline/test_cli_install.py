"""`pip install 'lubdub[client]'` in a fresh virtual environment, as on a clinic laptop:
a working `lubdub`, and none of the server's stack (Django, TensorFlow, numpy...)."""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from jobs.models import Batch
from tests.conftest import ROOT, SAMPLES
from tests.pipeline.conftest import LABELS

pytestmark = pytest.mark.slow

# requests' own dependencies come with it; nothing else may.
CLIENT_DISTRIBUTIONS = {
    "lubdub",
    "requests",
    "tqdm",
    "zipstream-ng",
    "certifi",
    "charset-normalizer",
    "idna",
    "urllib3",
}
# What the venv itself brings.
INSTALLER = {"pip", "setuptools", "wheel"}
SERVER_MODULES = [
    "django",
    "rest_framework",
    "celery",
    "boto3",
    "tensorflow",
    "ai_edge_litert",
    "librosa",
    "numpy",
    "scipy",
]
NAMES = ["a0033.wav", "d0001.wav"]


def _environment() -> dict[str, str]:
    """The test's environment without what would let the venv see this checkout's packages."""
    hidden = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    return {key: value for key, value in os.environ.items() if key not in hidden}


def _sources(target: Path) -> Path:
    """The files a build of the distribution reads, copied: pip builds in the source
    folder, and a build/ left in the checkout would carry stale modules into later wheels."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in found]
    target.mkdir()
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, target / name)
    for package in packages:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client-install")
    source = _sources(root / "source")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=_environment())
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{source}[client]"],
        capture_output=True,
        text=True,
        cwd=root,
        env=_environment(),
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    return venv


def _run(venv: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Run outside the checkout, so that nothing is imported from it by accident.
    return subprocess.run(
        [*args],
        capture_output=True,
        text=True,
        cwd=venv,
        env={**_environment(), **env},
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def test_it_installs_the_client_extra_without_the_server_stack(client_venv: Path) -> None:
    python, lubdub = str(client_venv / "bin" / "python"), str(client_venv / "bin" / "lubdub")

    listed = _run(client_venv, python, "-m", "pip", "list", "--format=json")
    helped = _run(client_venv, lubdub, "--help")
    imports = {
        module: _run(client_venv, python, "-c", f"import {module}").stderr for module in SERVER_MODULES
    }

    assert listed.returncode == 0, listed.stderr
    names = {entry["name"].lower().replace("_", "-") for entry in json.loads(listed.stdout)}
    assert names - INSTALLER == CLIENT_DISTRIBUTIONS
    assert all(f"No module named '{module}'" in error for module, error in imports.items()), imports
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: lubdub") and "submit" in helped.stdout


def test_it_submits_a_folder_and_downloads_results_from_a_client_only_install(
    client_venv: Path,
    live_server: Any,
    shared_worker: Any,
    default_model: Any,
    member: Any,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "clinic"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(SAMPLES / name, folder / name)
    (folder / "labels.csv").write_text("path,label\n" + "".join(f"{n},{LABELS[n]}\n" for n in NAMES))
    server = {"LUBDUB_URL": live_server.url, "LUBDUB_TOKEN": Token.objects.create(user=member).key}
    lubdub = str(client_venv / "bin" / "lubdub")

    submitted = _run(client_venv, lubdub, "-q", "submit", str(folder), "--wait", **server)
    batch_id = submitted.stdout.strip()
    rows = _run(client_venv, lubdub, "-q", "results", batch_id, "--format", "json", **server)

    assert submitted.returncode == 0, submitted.stderr
    assert Batch.objects.get(pk=batch_id).status == Batch.Status.COMPLETED
    assert rows.returncode == 0, rows.stderr
    found = {row["path"]: row for row in json.loads(rows.stdout)}
    assert set(found) == set(NAMES)
    assert {row["truth"] for row in found.values()} == {LABELS[name] for name in NAMES}
    assert all(row["label"] for row in found.values())
