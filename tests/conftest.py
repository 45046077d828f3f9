"""Shared fixtures. Every service here is the real one: PostgreSQL, Redis and
the S3-API server started by infra/services.sh (their URLs in the environment)."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "physionet"


@pytest.fixture(scope="session", autouse=True)
def _bucket(django_db_setup: None) -> None:
    from jobs import storage

    storage.ensure_bucket()


def test_database_url() -> str:
    """DATABASE_URL pointing at the test database pytest-django created."""
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def wait_for_worker(log_path: Path, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{log_path.read_text()}")
        if log_path.exists() and " ready." in log_path.read_text():
            return
        time.sleep(0.2)
    raise TimeoutError(f"worker not ready after {timeout}s:\n{log_path.read_text()}")


def start_worker(
    log_path: Path,
    *,
    queues: str,
    concurrency: int = 1,
    name: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A real Celery worker process on the real Redis, writing to the test database.

    It runs in a process group of its own, so a test can SIGKILL all of it."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "--loglevel",
            "INFO",
            "-n",
            name or f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--logfile",
            str(log_path),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **(env or {}),
        },
        start_new_session=True,
    )
    wait_for_worker(log_path, process)
    return process


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def celery_worker(tmp_path: Path, transactional_db: None) -> Iterator[subprocess.Popen[bytes]]:
    from config.celery_app import app

    app.control.purge()
    queues = ",".join(queue.name for queue in app.conf.task_queues)
    process = start_worker(tmp_path / "worker.log", queues=queues)
    yield process
    stop_worker(process)


@pytest.fixture
def filesystem_storage(settings: Any, tmp_path: Path) -> Path:
    """Switch Django's default storage to the local filesystem for one test."""
    settings.USE_S3 = False
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media"), "allow_overwrite": True},
        },
    }
    return tmp_path / "media"
