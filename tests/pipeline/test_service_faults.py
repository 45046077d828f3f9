"""Backing services failing mid-batch: Redis killed and restarted, PostgreSQL
dropping every connection of the worker, the S3-API server hung. Each batch
still finishes, every recording explained and none predicted twice.

Each test runs its worker on a Redis of its own (and the S3 test on an S3-API
server of its own): killing or pausing the shared services would break every
other test and app using them, and on the shared broker the session's shared
worker would take this test's tasks.
"""

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
import redis
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from jobs import storage
from jobs.models import Analysis, Batch, Recording
from jobs.services import sweeper
from tests.conftest import free_port
from tests.faults import assert_batch_ended_well
from tests.pipeline.conftest import (
    kill_worker,
    launch_worker,
    sample_archive,
    upload,
    wait_for,
    wait_for_batch,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

COPIES = 2  # 48 recordings: several chunks still queued when the fault hits
CHUNK = "8"


class PrivateRedis:
    """A redis-server of the test's own, configured as infra/services.sh runs
    it (no snapshots, no append-only file): a kill loses whatever it held."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is installed by infra/services.sh"
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        # Database 15, as the test settings choose for the shared one.
        self.url = f"redis://127.0.0.1:{self.port}/15"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            wait_for(lambda: self._answers(client), timeout=20)
        finally:
            client.close()

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def queued(self) -> int:
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            return sum(int(client.llen(key)) for key in client.scan_iter(_type="list"))
        finally:
            client.close()


@pytest.fixture
def private_broker(tmp_path: Path, settings: Any) -> Iterator[PrivateRedis]:
    """A private Redis as this process's broker (the API's sends, the sweeper's) and /healthz's Redis.

    The shared broker is back before this fixture ends, not at the monkeypatch
    fixture's later teardown: the teardown that waits for the session's shared
    worker to be idle asks the broker in between.
    """
    from config.celery_app import app

    server = PrivateRedis(tmp_path)
    server.start()
    settings.REDIS_URL = server.url
    with pytest.MonkeyPatch.context() as patch:
        # Only broker_url: the read and write URLs follow it, and setting them too
        # would leave them behind when the patch is undone.
        patch.setattr(app.conf, "broker_url", server.url)
        # Fresh connection and producer pools: the ones made for the shared broker would be reused.
        patch.setattr(app, "_pool", None)
        patch.setattr(app.amqp, "_producer_pool", None)
        try:
            yield server
        finally:
            if app._pool is not None:
                app._pool.force_close_all()
            server.kill()


class Beat:
    """The sweep every `every` seconds, as beat runs it. A sweep that fails (a
    service still coming back) is tried again on the next beat, as beat would."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.summaries: list[sweeper.SweepSummary] = []
        self.errors: list[str] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._halt.wait(self.every):
                try:
                    self.summaries.append(sweeper.sweep())
                except Exception as exc:  # noqa: BLE001 - kept for the failure message
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    connection.close()
        finally:
            connection.close()

    def __enter__(self) -> "Beat":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._halt.set()
        self._thread.join()


def _database_url(name: str) -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{name}"))


def _worker(tmp_path: Path, broker: PrivateRedis, **env: str) -> subprocess.Popen[bytes]:
    return launch_worker(
        tmp_path / "worker.log",
        env={"REDIS_URL": broker.url, "LUBDUB_ANALYSIS_CHUNK": CHUNK, **env},
    )


def _mid_batch(batch_id: Any) -> None:
    """Until some recordings are done and most are still waiting."""
    wait_for(lambda: Batch.objects.get(pk=batch_id).done_count >= int(CHUNK), timeout=120)
    batch = Batch.objects.get(pk=batch_id)
    assert batch.pending_count > int(CHUNK), "the batch finished before the fault"


def _assert_all_analysed(batch: Batch) -> None:
    """A transient outage fails no recording: every one gets its prediction."""
    recordings = Recording.objects.filter(batch=batch).count()
    assert recordings == 24 * COPIES
    assert (batch.status, batch.done_count, batch.failed_count) == (Batch.Status.COMPLETED, recordings, 0)
    assert set(Analysis.objects.filter(batch=batch).values_list("status", flat=True)) == {
        Analysis.Status.DONE
    }
    assert_batch_ended_well(batch)


def test_a_batch_finishes_after_redis_is_killed_and_restarted(
    tmp_path: Path, default_model: Any, api: APIClient, private_broker: PrivateRedis, settings: Any
) -> None:
    # Queued chunks die with Redis; the sweeper queues a batch's pending work
    # again after the claim timeout without activity (600 s in production).
    settings.LUBDUB_CLAIM_TIMEOUT_SECONDS = 10
    worker = _worker(tmp_path, private_broker)
    try:
        created = upload(api, sample_archive(copies=COPIES), "redis.zip")
        _mid_batch(created["id"])

        private_broker.kill()
        time.sleep(3)  # the worker and the producers see the broker gone
        private_broker.start()  # same port, empty: the queued chunks are lost
        assert private_broker.queued() == 0

        with Beat() as beat:
            batch = wait_for_batch(created["id"], timeout=180)
        # The worker reconnected to the restarted broker instead of exiting.
        assert worker.poll() is None
    finally:
        kill_worker(worker)

    assert any(summary.requeued for summary in beat.summaries), (
        "finished without the sweeper: nothing was lost"
    )
    _assert_all_analysed(batch)


def test_a_batch_finishes_after_the_database_drops_the_workers_connections(
    tmp_path: Path, default_model: Any, api: APIClient, private_broker: PrivateRedis, settings: Any
) -> None:
    """The closest honest variant of restarting PostgreSQL.

    The Django test process holds pytest-django's test database on the shared
    server for the whole session, so that server cannot be restarted, and a
    private server for one test would need Django's connections moved under a
    running session. What a restart does to the worker is done to the test
    database only: every other connection to it is terminated, and new ones are
    refused ("not currently accepting connections") for a restart's length.
    Other databases on the shared server are not touched.
    """
    # Short claim heartbeats, so the sweeper takes back claims of chunks that
    # failed mid-write within seconds rather than the default lease of 30 s.
    worker = _worker(tmp_path, private_broker, LUBDUB_CLAIM_HEARTBEAT_SECONDS="1")
    settings.LUBDUB_CLAIM_LEASE_SECONDS = 3
    name = connection.settings_dict["NAME"]
    try:
        created = upload(api, sample_archive(copies=COPIES), "postgres.zip")
        _mid_batch(created["id"])

        # From the server's maintenance database: a database cannot refuse
        # connections while the one giving the order is connected to it.
        admin = psycopg2.connect(_database_url("postgres"), connect_timeout=5)
        admin.autocommit = True
        try:
            with admin.cursor() as cursor:
                cursor.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                try:
                    # This process's connection goes too, as in a restart.
                    cursor.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                        [name],
                    )
                    (terminated,) = cursor.fetchone()
                    time.sleep(8)
                finally:
                    cursor.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        finally:
            admin.close()
        connection.close()  # the terminated one; the next query connects again
        # Whether the worker held a connection at that instant is chance (it
        # may be classifying); that it met the refusal is asserted from its log.
        assert terminated >= 1

        with Beat():
            batch = wait_for_batch(created["id"], timeout=180)
        assert worker.poll() is None
    finally:
        kill_worker(worker)

    _assert_all_analysed(batch)
    # The worker did meet the outage: its chunks failed to reach the database and retried.
    log = (tmp_path / "worker.log").read_text()
    assert "not currently accepting connections" in log, log[-3000:]


def test_a_batch_finishes_after_storage_hangs_and_the_web_keeps_answering(
    tmp_path: Path,
    default_model: Any,
    api: APIClient,
    member: Any,
    private_broker: PrivateRedis,
    private_s3: subprocess.Popen[bytes],
    settings: Any,
) -> None:
    # The worker's test settings name the bucket lubdub-test: the test uses the same one.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            **settings.STORAGES["default"],
            "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "bucket_name": "lubdub-test"},
        },
    }
    storage.ensure_bucket()
    options = settings.STORAGES["default"]["OPTIONS"]
    read_timeout = 2.0
    worker = _worker(
        tmp_path,
        private_broker,
        S3_ENDPOINT_URL=options["endpoint_url"],
        AWS_ACCESS_KEY_ID=options["access_key"],
        AWS_SECRET_ACCESS_KEY=options["secret_key"],
        LUBDUB_STORAGE_READ_TIMEOUT_S=str(read_timeout),
    )
    web = Client()
    web.force_login(member)
    try:
        created = upload(api, sample_archive(copies=COPIES), "storage.zip")
        _mid_batch(created["id"])

        # A paused server accepts connections and never answers, like a hung store,
        # for several times the worker's read timeout (and all its attempts).
        os.kill(private_s3.pid, signal.SIGSTOP)
        try:
            paused_at = time.monotonic()
            answers = []
            while time.monotonic() - paused_at < 6 * read_timeout:
                started = time.monotonic()
                health = web.get("/healthz")
                shown = api.get(f"/api/v1/batches/{created['id']}/")
                page = web.get(reverse("batch-detail", args=[created["id"]]))
                progress = web.get(reverse("batch-progress", args=[created["id"]]))
                answers.append((health, shown, page, progress, time.monotonic() - started))
                time.sleep(0.5)
        finally:
            os.kill(private_s3.pid, signal.SIGCONT)

        with Beat():
            batch = wait_for_batch(created["id"], timeout=240)
        assert worker.poll() is None
    finally:
        kill_worker(worker)

    assert len(answers) >= 3
    for health, shown, page, progress, seconds in answers:
        assert health.status_code == 503 and health.json()["failing"] == ["storage"]
        assert shown.status_code == 200 and shown.json()["id"] == created["id"]
        assert page.status_code == 200 and progress.status_code == 200
        assert seconds < 3
    _assert_all_analysed(batch)
    # The worker did meet the hung store: its chunks retried instead of finishing at once.
    log = (tmp_path / "worker.log").read_text()
    assert "StorageUnavailable" in log, log[-3000:]
