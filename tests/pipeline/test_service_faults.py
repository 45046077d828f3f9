"""Backing services failing during a batch: Redis killed and restarted,
PostgreSQL shut down mid-chunk and started again, the S3-API server hung.
Each batch still finishes, every recording analysed and none predicted twice.

The fault never races the worker. Each test's worker starts without the
`analyze` queue: it ingests the upload, and the batch's chunks wait in the
broker while the fault is set up. Only then is the worker told to consume
them, so it meets the fault with every recording still to do; its log shows
that it did, and the service comes back only after that.

Each test runs its worker on a Redis of its own (the database tests on a
PostgreSQL server of their own, the storage test on an S3-API server of its
own): killing, stopping or pausing the shared services would break every
other test and app using them, and the session's shared worker, on the shared
broker, never sees these tasks. Every fixture puts back what it changed
in this process (broker URL and connection pools, database access and
connections, storage settings) whether the test passed or not.
"""

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import kombu.pools
import psycopg2
import pytest
import redis
from django.db import DatabaseError, connection, connections
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from jobs import storage
from jobs.models import Analysis, Batch, Prediction, Recording
from jobs.services import sweeper
from tests.conftest import free_port
from tests.conftest import test_database_url as shared_database_url
from tests.faults import assert_batch_ended_well
from tests.pipeline.conftest import (
    LABELS,
    kill_worker,
    launch_worker,
    sample_archive,
    upload,
    wait_for_batch,
)
from tests.polling import poll_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHUNK = 8  # the batch's recordings in several chunks
RECORDINGS = len(LABELS)
# Queues the test's worker takes from the start: it ingests and writes
# reports, and is told to take `analyze` once the fault is in place.
FIRST_QUEUES = "ingest,reports"
FAULT_WORKER = "lubdub-fault-worker"  # the worker's application_name in pg_stat_activity


def forget_broker_connections() -> None:
    """Close every broker connection of this process; the next send opens new ones.

    kombu keeps one connection pool and one producer pool per broker address,
    process-wide, and Celery's app holds on to the ones it took. A pool closed
    with force_close_all() stays closed and would be handed out again for the
    same address ("Acquire on closed pool"), so the pools are dropped from
    kombu's registry as well as from the app.
    """
    from config.celery_app import app

    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


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
        poll_until(self._answers, timeout=20)

    def _answers(self) -> bool:
        try:
            with self._client() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def queued_analyses(self) -> list[int]:
        """The analysis ids in the chunk messages waiting in the `analyze` queue."""
        with self._client() as client:
            messages = client.lrange("analyze", 0, -1)
        ids = []
        for message in messages:
            envelope = json.loads(message)
            args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
            ids += args[1]
        return ids


@pytest.fixture
def private_broker(tmp_path: Path, settings: Any) -> Iterator[PrivateRedis]:
    """A private Redis as this process's broker (the API's sends, the sweeper's,
    control commands) and /healthz's Redis.

    The shared broker is back before this fixture ends, not at a later
    teardown: the teardown that waits for the session's shared worker to be
    idle asks the broker in between.
    """
    from config.celery_app import app

    server = PrivateRedis(tmp_path)
    server.start()
    settings.REDIS_URL = server.url
    try:
        with pytest.MonkeyPatch.context() as patch:
            # Only broker_url: the read and write URLs follow it, and setting them
            # too would leave them behind when the patch is undone.
            patch.setattr(app.conf, "broker_url", server.url)
            # A test before that pinned one of them would send this test's tasks elsewhere.
            assert app.conf.broker_write_url == app.conf.broker_read_url == server.url
            forget_broker_connections()
            yield server
    finally:
        # Whatever the test left (pools on a killed server, a half-used
        # producer), the shared broker gets fresh pools.
        forget_broker_connections()
        server.kill()


class FaultWorker:
    """The test's worker on the private broker, named so control commands reach it alone."""

    def __init__(self, folder: Path, broker: PrivateRedis, env: dict[str, str]) -> None:
        self.name = f"faults-{os.getpid()}-{time.monotonic_ns()}@{socket.gethostname()}"
        self.log_path = folder / "worker.log"
        self.process = launch_worker(
            self.log_path,
            queues=FIRST_QUEUES,
            name=self.name,
            env={
                "REDIS_URL": broker.url,
                "LUBDUB_ANALYSIS_CHUNK": str(CHUNK),
                "PGAPPNAME": FAULT_WORKER,
                **env,
            },
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 90) -> None:
        self.wait_for_log_line(re.escape(text), timeout=timeout)

    def wait_for_log_line(self, pattern: str, timeout: float = 90) -> None:
        try:
            poll_until(lambda: re.search(pattern, self.log()) is not None, timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"{pattern!r} not in the worker's log:\n{self.log()[-3000:]}") from None

    def answers(self) -> bool:
        from config.celery_app import app

        return bool(app.control.ping(destination=[self.name], timeout=1))

    def consume(self, queue: str) -> None:
        from config.celery_app import app

        replies = app.control.add_consumer(queue, destination=[self.name], reply=True, timeout=10)
        assert [list(reply) for reply in replies] == [[self.name]], replies
        assert "ok" in replies[0][self.name], replies


@pytest.fixture
def fault_worker(
    tmp_path: Path, private_broker: PrivateRedis, transactional_db: None
) -> Iterator[Callable[..., FaultWorker]]:
    """Starts the test's worker; it is stopped before the database is emptied."""
    started: list[FaultWorker] = []

    def start(**env: str) -> FaultWorker:
        worker = FaultWorker(tmp_path, private_broker, env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        kill_worker(worker.process)


def _upload_and_ingest(api: APIClient, broker: PrivateRedis, worker: FaultWorker, name: str) -> Any:
    """Upload a batch; once the worker has ingested it, every chunk waits in the broker."""
    created = upload(api, sample_archive(), name)
    worker.wait_for_log_line(r"Task lubdub\.ingest_batch\[[^]]+\] succeeded", timeout=120)
    batch = Batch.objects.get(pk=created["id"])
    pending = Analysis.objects.filter(batch=batch, status=Analysis.Status.PENDING)
    assert (batch.status, batch.pending_count) == (Batch.Status.ANALYSING, RECORDINGS)
    waiting = broker.queued_analyses()
    assert sorted(waiting) == sorted(pending.values_list("pk", flat=True)) and len(waiting) == RECORDINGS
    return created


def _assert_all_analysed(batch_id: Any, worker: FaultWorker) -> None:
    """A transient outage fails no recording: every one gets its prediction."""
    batch = Batch.objects.get(pk=batch_id)
    assert Recording.objects.filter(batch=batch).count() == RECORDINGS
    assert (batch.status, batch.done_count, batch.failed_count) == (Batch.Status.COMPLETED, RECORDINGS, 0)
    statuses = Analysis.objects.filter(batch=batch).values_list("status", flat=True)
    assert set(statuses) == {Analysis.Status.DONE}
    assert_batch_ended_well(batch)
    # The same worker did all of it: it came through the fault instead of exiting.
    assert worker.process.poll() is None, worker.log()[-3000:]


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


def test_a_batch_finishes_after_redis_is_killed_and_restarted(
    default_model: Any,
    api: APIClient,
    private_broker: PrivateRedis,
    fault_worker: Callable[..., FaultWorker],
    settings: Any,
) -> None:
    # Queued chunks die with Redis; the sweeper queues a batch's pending work
    # again after the claim timeout without activity (600 s in production).
    settings.LUBDUB_CLAIM_TIMEOUT_SECONDS = 10
    settings.LUBDUB_ANALYSIS_CHUNK = CHUNK  # the sweeper re-sends in the worker's chunks
    worker = fault_worker()
    created = _upload_and_ingest(api, private_broker, worker, "redis.zip")

    private_broker.kill()
    worker.wait_for_log("Connection to broker lost")
    private_broker.start()  # same port, empty: the queued chunks are lost
    assert private_broker.queued_analyses() == []
    forget_broker_connections()  # this process's connections went with the old server
    # The worker reconnects by itself; only then can it be told to take the analyses.
    poll_until(worker.answers, timeout=90)
    worker.consume("analyze")

    with Beat() as beat:
        wait_for_batch(created["id"], timeout=180)

    assert sum(summary.requeued for summary in beat.summaries) >= RECORDINGS, (
        "finished without the sweeper queueing the lost chunks again"
    )
    _assert_all_analysed(created["id"], worker)


def _postgres_bindir() -> Path:
    """The newest installed PostgreSQL, as infra/services.sh picks it."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    assert found, "PostgreSQL is installed by infra/services.sh"
    return found[-1].parent


class PrivatePostgres:
    """A PostgreSQL server of the test's own, started as infra/services.sh starts
    the shared one, holding a copy of the test database; stopping it is a real
    server shutdown for every connection to it, and it comes back on the same port."""

    def __init__(self) -> None:
        self.bin = _postgres_bindir()
        # As root the server runs as `postgres` (it refuses root), which cannot
        # enter pytest's 0700 temporary folders: a folder of its own in /tmp.
        self.folder = Path(tempfile.mkdtemp(prefix="lubdub-faults-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.name = str(connection.settings_dict["NAME"])
        self._run_as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._run_as_server:
            shutil.chown(self.folder, user="postgres")

    def create(self) -> None:
        # Trust on loopback: a throwaway server; the shared one's user name is kept.
        self._server_command(
            "initdb", "-D", str(self.data), "-U", str(connection.settings_dict["USER"]), "--auth=trust"
        )

    def _server_command(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self._run_as_server, str(self.bin / program), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def url(self, database: str | None = None) -> str:
        parts = urlsplit(os.environ["DATABASE_URL"])
        netloc = f"{parts.username}@127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc, path=f"/{database or self.name}"))

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._server_command("pg_ctl", "-D", str(self.data), "-l", log, "-w", "start", "-o", options)

    def stop(self) -> None:
        """A fast shutdown, as a restart does: every session is terminated at once."""
        self._server_command("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def copy_test_database(self) -> None:
        """The test database as it is now (schema and rows), on this server."""
        self.query("postgres", f'CREATE DATABASE "{self.name}"')
        dump = subprocess.run(
            [str(self.bin / "pg_dump"), "--no-owner", "--no-privileges", "-d", shared_database_url()],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [str(self.bin / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url()],
            input=dump.stdout,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def query(self, database: str, sql: str, params: list[Any] | None = None) -> Any:
        with contextlib.closing(psycopg2.connect(self.url(database), connect_timeout=5)) as admin:
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchone() if cursor.description else None

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def private_database(transactional_db: None) -> Iterator[PrivatePostgres]:
    """This process's database connections moved to a private server holding a
    copy of the test database, for the test; put back before the test database
    is emptied, whatever happened."""
    server = PrivatePostgres()
    saved = dict(connection.settings_dict)
    try:
        server.create()
        server.start()
        server.copy_test_database()
        connections.close_all()
        # Every connection of this alias (any thread's) is made from this dict.
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(server.port))
        yield server
    finally:
        with contextlib.suppress(DatabaseError):
            connections.close_all()  # a connection the restart broke
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        server.remove()


@contextlib.contextmanager
def held_lock(server: PrivatePostgres, sql: str, params: list[Any] | None = None) -> Iterator[None]:
    """A lock taken by a transaction of the test's own: the worker's statement
    that needs it waits, inside its task, with its connection open."""
    with contextlib.closing(psycopg2.connect(server.url(), connect_timeout=5)) as holder:
        with holder.cursor() as cursor:
            cursor.execute(sql, params)
        yield


def _worker_waits_on_a_lock(server: PrivatePostgres) -> bool:
    (waiting,) = server.query(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = %s AND wait_event_type = 'Lock'",
        [server.name, FAULT_WORKER],
    )
    return bool(waiting)


def _restart_once_the_worker_waits(server: PrivatePostgres, worker: FaultWorker) -> None:
    """Shut the server down while the worker waits on the lock held by the test,
    and start it again once a retry of the worker has found it gone."""
    poll_until(lambda: _worker_waits_on_a_lock(server), timeout=60)
    server.stop()
    # The statement failed with its connection (or, after Django dropped the
    # broken connection, the reconnect at the end of the transaction did).
    worker.wait_for_log_line(
        r"analyze_chunk\[[^]]+\] retry: .*OperationalError\('(server closed the connection"
        r" unexpectedly|terminating connection due to administrator command|.*the database system"
        r" is shutting down)"
    )
    worker.wait_for_log_line(r"analyze_chunk\[[^]]+\] retry: .*Connection refused")
    server.start()
    connections.close_all()  # this process's connection went with the old server


def test_a_batch_finishes_after_postgresql_restarts_during_a_claim(
    private_database: PrivatePostgres,
    default_model: Any,
    api: APIClient,
    private_broker: PrivateRedis,
    fault_worker: Callable[..., FaultWorker],
) -> None:
    """PostgreSQL shut down while the worker claims its first chunk, and started
    again once the worker has found it gone.

    The server is the test's own (the shared one holds every other test's
    connections); this process and the worker both use it, as the web and the
    workers of a deployment use theirs.
    """
    worker = fault_worker(DATABASE_URL=private_database.url())
    created = _upload_and_ingest(api, private_broker, worker, "postgres.zip")

    analyses = f"SELECT id FROM {Analysis._meta.db_table} WHERE batch_id = %s FOR UPDATE"  # noqa: S608
    with held_lock(private_database, analyses, [str(created["id"])]):
        worker.consume("analyze")
        _restart_once_the_worker_waits(private_database, worker)

    wait_for_batch(created["id"], timeout=180)
    _assert_all_analysed(created["id"], worker)


def test_a_batch_finishes_after_postgresql_restarts_during_a_chunks_write(
    private_database: PrivatePostgres,
    default_model: Any,
    api: APIClient,
    private_broker: PrivateRedis,
    fault_worker: Callable[..., FaultWorker],
    settings: Any,
) -> None:
    """The restart after the chunk's claim and classification, while its results
    are being written: the claimed recordings are left running, and come back
    through the sweeper once their claim is no longer renewed."""
    # Claims renewed every second by the worker, stale after three (30 s in production).
    settings.LUBDUB_CLAIM_LEASE_SECONDS = 3
    worker = fault_worker(DATABASE_URL=private_database.url(), LUBDUB_CLAIM_HEARTBEAT_SECONDS="1")
    created = _upload_and_ingest(api, private_broker, worker, "postgres-write.zip")

    with Beat() as beat:
        predictions = f"LOCK TABLE {Prediction._meta.db_table} IN EXCLUSIVE MODE"
        with held_lock(private_database, predictions):
            worker.consume("analyze")
            _restart_once_the_worker_waits(private_database, worker)
        wait_for_batch(created["id"], timeout=180)

    assert sum(summary.requeued for summary in beat.summaries) >= CHUNK, (
        "finished without the sweeper queueing the interrupted chunk again"
    )
    _assert_all_analysed(created["id"], worker)


HEALTHZ_SECONDS = 2.0  # what a hung dependency may cost /healthz
READ_TIMEOUT_SECONDS = 10.0  # this process's storage read timeout in the storage test


def _timed(request: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    response = request()
    return response, time.monotonic() - started


@pytest.fixture
def storage_worker_env(private_s3: subprocess.Popen[bytes], settings: Any) -> dict[str, str]:
    """This process and the worker on the private S3-API server, in the bucket
    the worker's test settings name."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            **settings.STORAGES["default"],
            "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "bucket_name": "lubdub-test"},
        },
    }
    settings.LUBDUB_STORAGE_READ_TIMEOUT_S = READ_TIMEOUT_SECONDS
    storage.ensure_bucket()
    options = settings.STORAGES["default"]["OPTIONS"]
    return {
        "S3_ENDPOINT_URL": options["endpoint_url"],
        "AWS_ACCESS_KEY_ID": options["access_key"],
        "AWS_SECRET_ACCESS_KEY": options["secret_key"],
        "LUBDUB_STORAGE_READ_TIMEOUT_S": "2",
    }


def test_a_batch_finishes_after_storage_hangs_and_the_web_keeps_answering(
    default_model: Any,
    api: APIClient,
    member: Any,
    private_broker: PrivateRedis,
    private_s3: subprocess.Popen[bytes],
    storage_worker_env: dict[str, str],
    fault_worker: Callable[..., FaultWorker],
) -> None:
    worker = fault_worker(**storage_worker_env)
    created = _upload_and_ingest(api, private_broker, worker, "storage.zip")
    web = Client()
    web.force_login(member)
    batch_page = reverse("batch-detail", args=[created["id"]])
    progress_page = reverse("batch-progress", args=[created["id"]])

    # A paused server accepts connections and never answers, like a hung store.
    os.kill(private_s3.pid, signal.SIGSTOP)
    try:
        worker.consume("analyze")
        answers: list[dict[str, tuple[Any, float]]] = []
        deadline = time.monotonic() + 120
        # The store stays hung until the worker's reads have timed out and its
        # chunk is waiting to retry; the web is asked all along.
        while True:
            answers.append(
                {
                    "healthz": _timed(lambda: web.get("/healthz")),
                    "api": _timed(lambda: api.get(f"/api/v1/batches/{created['id']}/")),
                    "page": _timed(lambda: web.get(batch_page)),
                    "progress": _timed(lambda: web.get(progress_page)),
                }
            )
            if "StorageUnavailable" in worker.log() or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        os.kill(private_s3.pid, signal.SIGCONT)
    assert "StorageUnavailable" in worker.log(), worker.log()[-3000:]

    wait_for_batch(created["id"], timeout=240)

    for answer in answers:
        (health, health_s), (shown, shown_s) = answer["healthz"], answer["api"]
        assert health.status_code == 503 and health.json()["failing"] == ["storage"], health.content
        assert health_s < HEALTHZ_SECONDS, answer
        # Pages and API calls that need no storage answer while it hangs: a
        # storage request would wait out this process's read timeout first.
        assert shown.status_code == 200 and shown.json()["id"] == created["id"]
        assert [answer[name][0].status_code for name in ("page", "progress")] == [200, 200]
        assert max(shown_s, answer["page"][1], answer["progress"][1]) < READ_TIMEOUT_SECONDS / 2, answer
    _assert_all_analysed(created["id"], worker)
