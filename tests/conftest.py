"""Shared fixtures. Every service here is the real one: PostgreSQL, Redis and
the S3-API server started by infra/services.sh (their URLs in the environment)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.polling import poll_until

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
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{log_path.read_text()}")
        return log_path.exists() and " ready." in log_path.read_text()

    poll_until(ready, timeout, interval=0.2, message=lambda: f"worker not ready:\n{log_path.read_text()}")


def worker_command(log_path: Path, *, queues: str, concurrency: int = 1, name: str) -> list[str]:
    """The command line of a test's Celery worker, logging to ``log_path``."""
    return [
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
        name,
        "--without-gossip",
        "--without-mingle",
        "--logfile",
        str(log_path),
    ]


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
        worker_command(
            log_path,
            queues=queues,
            concurrency=concurrency,
            name=name or f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
        ),
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


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_s3(settings: Any) -> Iterator[subprocess.Popen[bytes]]:
    """An S3-API server of this test's own, as default storage, that the test may pause.

    Pausing the shared server (SIGSTOP) would stall every other test using it.
    The server is always resumed before it is stopped.
    """
    from jobs import storage

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        poll_until(
            lambda: _answers(f"{endpoint}/moto-api/"),
            10,
            interval=0.05,
            ignoring=(OSError,),
            message="the private S3-API server did not answer",
        )
        settings.USE_S3 = True
        settings.S3_CREATE_BUCKET = True
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": "lubdub-private",
                    "endpoint_url": endpoint,
                    "region_name": "us-east-1",
                    "access_key": "private",
                    "secret_key": "private",
                    "addressing_style": "path",
                    "signature_version": "s3v4",
                },
            },
        }
        storage.ensure_bucket()
        yield server
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait(timeout=30)
