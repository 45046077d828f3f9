"""Deleting audio no row refers to, while an ingest is about to refer to it.

Ingest refers to audio another batch stored (same SHA-256) instead of storing it
again: it looks that batch's row up when it reads the member, and writes its own
rows, which name the object, later. The orphan sweep and a batch's deletion
delete an object once no row refers to it. Between the two steps of the ingest,
the other batch's rows can go (deleted, or a crash between the row delete and
the object delete), and a sweep then finds the object referred to by nobody:
the new rows are not committed yet. Without a guard the sweep deletes audio the
new rows need. These tests hold the ingest at each point of that window and
run the deletion there, on PostgreSQL and an S3-API server of the test's own
(the sweep lists whole folders).
"""

import contextlib
import datetime
import hashlib
import subprocess
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import pytest
from django.db import connection

from jobs import storage
from jobs.models import Batch, Recording
from jobs.services import ingest, lifecycle, packs, progress, queue, transient
from tests.conftest import SAMPLES
from tests.conftest import test_database_url as database_url
from tests.faults import InBackground
from tests.pipeline.conftest import upload
from tests.polling import poll_until

pytestmark = pytest.mark.django_db(transaction=True)
WAV = (SAMPLES / "a0033.wav").read_bytes()
NO_GRACE = datetime.timedelta(0)
T = TypeVar("T")


@pytest.fixture
def no_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest runs here, in the test; nothing is queued."""
    monkeypatch.setattr(queue, "send_ingest", lambda batch: None)
    monkeypatch.setattr(queue, "send_analysis", lambda batch, ids, *, chunk_size: 1)


def in_own_session(work: Callable[[], T]) -> Callable[[], T]:
    """`work` for a thread: its database session is its own, closed when it is done."""

    def run() -> T:
        try:
            return work()
        finally:
            connection.close()

    return run


def ingest_as_the_task_does(batch_id: Any) -> int:
    """The ingest task: run again after an error it retries; returns the attempts it took."""
    for attempt in (1, 2, 3):
        try:
            ingest.ingest_batch(batch_id)
            return attempt
        except transient.RETRIED_ERRORS:
            continue
    raise AssertionError("ingest failed three times")


def reads_back(batch_id: Any) -> bool:
    rows = Recording.objects.filter(batch_id=batch_id, status=Recording.Status.STORED)
    assert rows.exists()
    for row in rows:
        try:
            audio = packs.read_one(packs.span_of(row.storage_key, row.storage_offset, row.size_bytes))
        except FileNotFoundError:
            return False
        if hashlib.sha256(audio).hexdigest() != row.sha256:
            return False
    return True


@pytest.fixture
def stored_twice(
    private_s3: subprocess.Popen[bytes], default_model: Any, api: Any, no_tasks: None
) -> tuple[Any, Any, str]:
    """A batch whose recording is stored, and a second upload of the same audio, not ingested yet."""
    first = upload(api, WAV, "first.wav")["id"]
    ingest.ingest_batch(first)
    shared_key = Recording.objects.get(batch_id=first).storage_key
    second = upload(api, WAV, "second.wav")["id"]
    return first, second, shared_key


def crash_after_the_row_delete_then_sweep(first: Any) -> None:
    Batch.objects.filter(pk=first).delete()  # the object delete never came
    assert lifecycle.sweep_orphans(grace=NO_GRACE) == 1


def delete_the_batch(first: Any) -> None:
    assert lifecycle.delete_batch(Batch.objects.get(pk=first)) >= 1


@pytest.mark.parametrize("delete_audio", [crash_after_the_row_delete_then_sweep, delete_the_batch])
def test_an_ingest_whose_shared_audio_was_deleted_before_its_rows_stores_it_again(
    stored_twice: tuple[Any, Any, str], delete_audio: Callable[[Any], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, shared_key = stored_twice
    write = ingest._Rows.write
    held: list[bool] = []

    def delete_then_write(rows: Any, *, final: bool = False) -> None:
        # The ingest has found the first batch's row and placed the recording at
        # its object; the deletion comes before its own rows are written.
        if not held:
            held.append(True)
            delete_audio(first)
            assert not storage.exists(shared_key)
        write(rows, final=final)

    monkeypatch.setattr(ingest._Rows, "write", delete_then_write)

    attempts = ingest_as_the_task_does(second)

    assert held
    assert reads_back(second), "the new rows name audio that was deleted"
    assert Recording.objects.get(batch_id=second).storage_key != shared_key  # stored anew
    assert attempts == 2  # the rows naming the deleted object were never written; the retry stored it
    assert Batch.objects.get(pk=second).status == Batch.Status.ANALYSING


def advisory_lock_waits() -> int:
    """Sessions of the test database waiting for an advisory lock, asked from a session of its own."""
    with contextlib.closing(psycopg2.connect(database_url(), connect_timeout=5)) as monitor:
        monitor.autocommit = True
        with monitor.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            return int(cursor.fetchone()[0])


def test_a_sweep_waits_for_an_ingest_writing_rows_that_name_the_object(
    stored_twice: tuple[Any, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, shared_key = stored_twice
    finalise = progress.finalise_if_done
    sweep: list[InBackground] = []

    def sweep_while_the_rows_are_uncommitted(batch_id: Any) -> Any:
        # Inside the ingest's transaction: its rows, which name the shared object,
        # are written but not committed. The first batch's rows go now (another
        # session), so no committed row refers to the object, and a sweep starts.
        gone = InBackground(in_own_session(lambda: Batch.objects.filter(pk=first).delete()))
        gone.start()
        gone.result()
        sweeping = InBackground(in_own_session(lambda: lifecycle.sweep_orphans(grace=NO_GRACE)))
        sweeping.start()
        sweep.append(sweeping)
        # It must wait for this transaction; without a lock it ends at once, having deleted the object.
        poll_until(
            lambda: not sweeping.is_alive() or advisory_lock_waits() > 0,
            30,
            interval=0.05,
            message="the sweep neither ended nor waited",
        )
        return finalise(batch_id)

    monkeypatch.setattr(progress, "finalise_if_done", sweep_while_the_rows_are_uncommitted)

    ingest.ingest_batch(second)

    [sweeping] = sweep
    assert sweeping.result() == 0  # after the commit the object has a row again
    assert storage.exists(shared_key)
    assert Recording.objects.get(batch_id=second).storage_key == shared_key
    assert reads_back(second)


def test_a_sweep_still_deletes_what_nobody_refers_to_once_the_ingest_committed(
    stored_twice: tuple[Any, Any, str],
) -> None:
    first, second, shared_key = stored_twice
    ingest.ingest_batch(second)
    lifecycle.delete_batch(Batch.objects.get(pk=first))
    assert storage.exists(shared_key)  # the second batch refers to it

    Batch.objects.filter(pk=second).delete()  # a crash between the row and the object delete

    assert lifecycle.sweep_orphans(grace=NO_GRACE) == 1
    assert not storage.exists(shared_key)
