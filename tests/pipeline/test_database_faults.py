"""Transient database errors in the middle of a chunk, on a connection that still works.

A second session of the test's own sets each fault off on the real PostgreSQL
while the chunk task runs: it cancels the chunk's read of earlier predictions
(the error a statement timeout or an operator gives), and it deadlocks with the
chunk's write (deadlock_detected, SQLSTATE 40P01). Either way the task retries
(Celery runs the retry in place when a task is applied eagerly), and every
recording ends analysed: none failed, none predicted twice.
"""

from typing import Any

import pytest
from django.db.models import Max, Min

from jobs.models import Analysis, Batch, Prediction
from jobs.services import ingest, queue
from tests.faults import InBackground, assert_batch_ended_well, blocked_by, rival_session
from tests.pipeline.conftest import sample_archive, upload

pytestmark = pytest.mark.django_db(transaction=True)

NAMES = ["a0033.wav", "a0035.wav", "a0071.wav"]


def _ingested(api: Any, monkeypatch: pytest.MonkeyPatch, filename: str) -> tuple[Batch, list[int]]:
    """A batch ingested here, its chunk not queued: this test runs the chunk task itself
    (and writes no reports: a worker left running by another test must not either)."""
    monkeypatch.setattr(queue, "send_ingest", lambda batch: None)
    monkeypatch.setattr(queue, "send_reports", lambda batch_id, priority: None)
    created = upload(api, sample_archive(NAMES), filename)
    ids = ingest.ingest_batch(created["id"], queue_analysis=False)
    assert len(ids) == len(NAMES)
    return Batch.objects.get(pk=created["id"]), ids


def _run_chunk_task(batch: Batch, ids: list[int]) -> Any:
    from workers import tasks

    return tasks.analyse_chunk.apply(args=[str(batch.pk), ids])


def _assert_all_analysed_on_the_retry(batch: Batch, ids: list[int], result: Any) -> None:
    assert result.successful(), result.traceback
    analyses = Analysis.objects.filter(pk__in=ids)
    assert set(analyses.values_list("status", flat=True)) == {Analysis.Status.DONE}
    assert result.get() == len(ids), "the retry found nothing left to claim"
    batch.refresh_from_db()
    assert_batch_ended_well(batch)
    assert batch.status == Batch.Status.COMPLETED
    assert (batch.done_count, batch.failed_count) == (len(ids), 0)
    # Claimed by the first run, given back, claimed again by the retry.
    assert analyses.aggregate(low=Min("attempts"), high=Max("attempts")) == {"low": 2, "high": 2}
    assert Prediction.objects.filter(batch=batch).count() == len(ids)


def test_it_retries_a_chunk_whose_read_is_cancelled(
    default_model: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, ids = _ingested(api, monkeypatch, "cancelled.zip")

    with rival_session() as rival:
        with rival.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {Prediction._meta.db_table} IN ACCESS EXCLUSIVE MODE")

        def cancel_the_waiting_read() -> str:
            pid, query = blocked_by(rival)
            with rival.cursor() as cursor:
                cursor.execute("SELECT pg_cancel_backend(%s)", [pid])
            rival.rollback()  # the lock goes with the transaction
            return query

        rival_thread = InBackground(cancel_the_waiting_read)
        rival_thread.start()
        result = _run_chunk_task(batch, ids)
        cancelled = rival_thread.result()

    assert cancelled.lstrip().upper().startswith("SELECT")
    assert Prediction._meta.db_table in cancelled
    _assert_all_analysed_on_the_retry(batch, ids, result)


def test_it_retries_a_chunk_whose_write_meets_a_deadlock(
    default_model: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, ids = _ingested(api, monkeypatch, "deadlock.zip")
    analyses = Analysis._meta.db_table

    with rival_session() as rival:
        # The batch row, so that the chunk's write waits at its counters, after
        # it has locked its analyses; key-share (the predictions' foreign key) passes.
        with rival.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {Batch._meta.db_table} WHERE id = %s FOR NO KEY UPDATE",  # noqa: S608
                [str(batch.pk)],
            )

        def deadlock_with_the_write() -> tuple[str, int]:
            _, query = blocked_by(rival)
            with rival.cursor() as cursor:
                # Waits for the analyses the chunk has locked: a cycle, which
                # PostgreSQL breaks by rolling the chunk's write back.
                cursor.execute(
                    f"UPDATE {analyses} SET claimed_at = claimed_at WHERE batch_id = %s",  # noqa: S608
                    [str(batch.pk)],
                )
                touched = cursor.rowcount
            rival.commit()
            return query, touched

        rival_thread = InBackground(deadlock_with_the_write)
        rival_thread.start()
        result = _run_chunk_task(batch, ids)
        waited, touched = rival_thread.result()

    assert waited.lstrip().upper().startswith("UPDATE")
    assert Batch._meta.db_table in waited
    assert touched == len(ids)
    _assert_all_analysed_on_the_retry(batch, ids, result)
