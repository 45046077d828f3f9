"""Fixtures for the batch pipeline: real workers, the real default model, archives."""

import contextlib
import io
import os
import signal
import socket
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import SAMPLES, start_worker
from tests.factories import MembershipFactory
from tests.polling import poll_until

ALL_QUEUES = "interactive,ingest,analyze,reports,default"
_shared_worker: str | None = None  # the node name while the session's worker runs
LABELS = dict(
    line.split(",") for line in (SAMPLES / "labels.csv").read_text().splitlines()[1:] if line.strip()
)


def launch_worker(
    log_path: Path, *, queues: str = ALL_QUEUES, env: dict[str, str] | None = None, name: str = ""
) -> subprocess.Popen[bytes]:
    return start_worker(log_path, queues=queues, env=env, name=name)


def kill_worker(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def only_own_consumers(*queues: str, purge: bool = True) -> Iterator[None]:
    """Every running worker stops consuming ``queues`` until the block ends, so the
    workers a test launches inside it are the only ones that take its tasks;
    ``purge`` first drops what earlier tests left queued."""
    from config.celery_app import app

    if purge:
        app.control.purge()
    for queue in queues:
        app.control.cancel_consumer(queue, destination=None)
    try:
        yield
    finally:
        for queue in queues:
            app.control.add_consumer(queue, destination=None)


@pytest.fixture(scope="session")
def shared_worker(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One worker on every queue for the tests that only need the pipeline to run."""
    from config.celery_app import app

    global _shared_worker
    app.control.purge()
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    name = f"pipeline-shared-{os.getpid()}@{socket.gethostname()}"
    process = launch_worker(log, name=name)
    _shared_worker = name
    yield log
    _shared_worker = None
    kill_worker(process)


def wait_until_idle(worker: str, timeout: float = 120) -> None:
    """Until no task waits in a queue and `worker` runs none."""
    from config.celery_app import app

    inspector = app.control.inspect(destination=[worker], timeout=5)
    with app.connection_for_write() as connection:
        client = connection.default_channel.client

        def idle() -> bool:
            waiting = sum(client.llen(key) for key in client.scan_iter(_type="list"))
            busy = [task for reply in (inspector.active() or {}).values() for task in reply]
            return waiting == 0 and not busy

        poll_until(idle, timeout, interval=0.2, message="the worker was still busy")


@pytest.fixture(autouse=True)
def _worker_idle_before_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """The session's shared worker may still run a task a test set off (a report,
    a re-queued chunk); the database is emptied only once it has finished, or
    the flush would fight the worker's locks."""
    if "transactional_db" in request.fixturenames:
        request.getfixturevalue("transactional_db")
    yield
    if _shared_worker is not None:
        wait_until_idle(_shared_worker)


@pytest.fixture
def default_model(transactional_db: None) -> Any:
    from jobs.services.registry import ensure_default_model

    version, _ = ensure_default_model()
    return version


@pytest.fixture
def member(transactional_db: None) -> Any:
    return MembershipFactory().user


@pytest.fixture
def api(member: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=member).key}")
    return client


def wait_for_batch(batch_id: Any, timeout: float = 120) -> Any:
    from jobs.models import Batch

    def finished() -> Any:
        batch = Batch.objects.get(pk=batch_id)
        return batch if batch.is_finished else None

    return poll_until(
        finished,
        timeout,
        interval=0.2,
        message=lambda: f"batch {batch_id} still {Batch.objects.get(pk=batch_id).status}",
    )


def sample_archive(names: list[str] | None = None, *, copies: int = 1, labels: bool = True) -> bytes:
    """A zip of real PhysioNet samples; copies > 1 adds renamed copies (distinct rows, same audio)."""
    chosen = names or sorted(LABELS)
    buffer = io.BytesIO()
    rows = ["path,label"]
    with zipfile.ZipFile(buffer, "w") as archive:
        for copy in range(copies):
            for name in chosen:
                path = name if copy == 0 else f"copy{copy}/{name}"
                archive.write(SAMPLES / name, path)
                rows.append(f"{path},{LABELS[name]}")
        if labels:
            archive.writestr("labels.csv", "\n".join(rows) + "\n")
    return buffer.getvalue()


def upload(api: APIClient, data: bytes, filename: str = "batch.zip", **fields: str) -> Any:
    response = api.post("/api/v1/batches/", {"file": _named(data, filename), **fields}, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()


def _named(data: bytes, filename: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = filename
    return handle
