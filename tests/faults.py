"""What every fault test asserts, and the faults themselves."""

import contextlib
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import psycopg2
import pytest
from django.db import OperationalError
from django.db.models import Count, Q

from jobs import storage
from jobs.models import Analysis, Batch, Prediction, Recording
from jobs.services import ingest
from tests.conftest import test_database_url as database_url
from tests.polling import poll_until


def assert_batch_ended_well(batch: Batch) -> None:
    """Finished; every recording has a result or a reason; no prediction twice."""
    batch.refresh_from_db()
    assert batch.is_finished, batch.status
    assert batch.pending_count == 0
    rejected_without_reason = Recording.objects.filter(
        batch=batch, status=Recording.Status.REJECTED, error_message=""
    )
    assert not rejected_without_reason.exists()
    analyses = Analysis.objects.filter(batch=batch)
    unexplained = analyses.exclude(
        Q(status=Analysis.Status.DONE, recording__predictions__model_version=batch.model_version_id)
        | Q(status=Analysis.Status.SKIPPED)
        | (Q(status=Analysis.Status.FAILED) & ~Q(error_message=""))
    )
    assert list(unexplained.values_list("recording__path", "status")) == []
    stored = Recording.objects.filter(batch=batch, status=Recording.Status.STORED).count()
    assert analyses.count() == stored
    duplicated = (
        Prediction.objects.filter(recording__batch=batch)
        .values("recording", "model_version")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert list(duplicated) == []


def lose_everything(settings: Any) -> None:
    """Empty the S3-API server the way a restart of the in-memory server does: buckets too."""
    endpoint = settings.STORAGES["default"]["OPTIONS"]["endpoint_url"]
    # The test's own loopback server (private_s3), never the shared one.
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(request, timeout=5).close()  # noqa: S310
    settings.S3_CREATE_BUCKET = False  # only to see that the bucket is gone
    with pytest.raises(storage.BucketMissing):
        storage.check()
    settings.S3_CREATE_BUCKET = True


@contextlib.contextmanager
def second_write_cut_off() -> Iterator[None]:
    """Within the block, ingest's second write of a group of rows fails as a lost database
    connection does (OperationalError: transient, the task retries); after it, writes go through."""
    original = ingest._Rows.write
    calls = 0

    def cut_off(rows: Any, *, final: bool = False) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OperationalError("the database went away")
        original(rows, final=final)

    with mock.patch.object(ingest._Rows, "write", cut_off):
        yield


# --- a second database session that holds locks while the code under test runs ---


@contextlib.contextmanager
def rival_session() -> Iterator[Any]:
    with contextlib.closing(psycopg2.connect(database_url(), connect_timeout=5)) as rival:
        # The chunk's session, waiting at its default deadlock_timeout (1 s),
        # is the one that finds a deadlock and is rolled back, never this one.
        with rival.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '60s'")
        rival.commit()
        yield rival


def blocked_by(rival: Any, timeout: float = 120) -> tuple[int, str]:
    """The session waiting on a lock the rival holds, and its statement.

    Asked from a session of its own: within the rival's transaction,
    pg_stat_activity would answer from the snapshot of its first look.
    """
    rival_pid = rival.get_backend_pid()
    with contextlib.closing(psycopg2.connect(database_url(), connect_timeout=5)) as monitor:
        monitor.autocommit = True
        with monitor.cursor() as cursor:

            def blocked() -> tuple[int, str] | None:
                cursor.execute(
                    "SELECT pid, query FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    [rival_pid],
                )
                row = cursor.fetchone()
                return (int(row[0]), str(row[1])) if row else None

            return poll_until(
                blocked, timeout, interval=0.05, message="the chunk never waited on the rival's lock"
            )


def wait_until_session_ends(pid: int, timeout: float = 30) -> None:
    """Until the server session PID is gone: a client killed while its statement
    waited on a lock leaves its session until that statement ends and the
    session finds the client gone (its transaction then rolls back)."""
    with contextlib.closing(psycopg2.connect(database_url(), connect_timeout=5)) as monitor:
        monitor.autocommit = True
        with monitor.cursor() as cursor:

            def ended() -> bool:
                cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
                return cursor.fetchone() is None

            poll_until(ended, timeout, interval=0.05, message=f"session {pid} still there")


class InBackground(threading.Thread):
    def __init__(self, fault: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fault = fault
        self.outcome: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.outcome = self.fault()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc

    def result(self) -> Any:
        self.join(timeout=180)
        if self.error is not None:
            raise self.error
        return self.outcome
