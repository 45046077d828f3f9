"""Killed workers, duplicate deliveries and a storage outage: batches still finish, once."""

import signal
import socket
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Count

from config.celery_app import app
from jobs.models import Analysis, Batch, Prediction, Recording
from jobs.services import sweeper
from jobs.services.queue import ANALYSE_TASK, INGEST_TASK
from tests.faults import blocked_by, rival_session, wait_until_session_ends
from tests.pipeline.conftest import (
    kill_worker,
    launch_worker,
    only_own_consumers,
    sample_archive,
    upload,
    wait_for_batch,
)
from tests.polling import poll_until


def _assert_one_prediction_each(batch: Batch) -> None:
    stored = Recording.objects.filter(batch=batch, status=Recording.Status.STORED)
    per_recording = (
        Prediction.objects.filter(recording__batch=batch).values("recording").annotate(n=Count("id"))
    )
    assert {row["n"] for row in per_recording} == {1}
    assert len(per_recording) == stored.count()
    assert batch.done_count == stored.count() and batch.pending_count == 0


@pytest.mark.slow
def test_it_completes_a_batch_after_its_worker_is_killed(
    tmp_path: Path, default_model: Any, api: Any, shared_worker: Any
) -> None:
    # The shared worker must not help: this test's own worker is the only consumer.
    with only_own_consumers("ingest", "analyze"):
        first = launch_worker(
            tmp_path / "first.log", queues="ingest,analyze", env={"LUBDUB_ANALYSIS_CHUNK": "4"}
        )
        created = upload(api, sample_archive(copies=4), "kill.zip")
        poll_until(lambda: Batch.objects.get(pk=created["id"]).done_count >= 4, timeout=90)

        # The worker is killed in the middle of a chunk: its next write waits
        # for the batch row (held here) with its claims taken, so work is left
        # whatever its speed.
        with rival_session() as rival:
            with rival.cursor() as cursor:
                cursor.execute(
                    f"SELECT 1 FROM {Batch._meta.db_table} WHERE id = %s FOR NO KEY UPDATE",  # noqa: S608
                    [created["id"]],
                )
            writer, _ = blocked_by(rival)
            kill_worker(first, signal.SIGKILL)
            rival.rollback()
        wait_until_session_ends(writer)
        batch = Batch.objects.get(pk=created["id"])
        assert batch.pending_count > 0
        assert Analysis.objects.filter(batch=batch, status=Analysis.Status.RUNNING).exists()

        # Its worker is gone, so every claim is stale, however recent.
        recovered = sweeper.sweep(stale_after=timedelta(microseconds=1))
        second = launch_worker(tmp_path / "second.log", queues="ingest,analyze,reports")
        try:
            batch = wait_for_batch(created["id"], timeout=120)
        finally:
            kill_worker(second)

    assert recovered.requeued > 0
    assert batch.status == Batch.Status.COMPLETED
    _assert_one_prediction_each(batch)


@pytest.mark.slow
def test_it_ignores_the_same_tasks_delivered_twice(default_model: Any, api: Any, shared_worker: Any) -> None:
    created = upload(api, sample_archive(["a0033.wav", "a0035.wav", "a0071.wav"]), "twice.zip")
    batch = wait_for_batch(created["id"])
    analysis_ids = list(Analysis.objects.filter(batch=batch).values_list("pk", flat=True))

    for _ in range(2):
        app.send_task(INGEST_TASK, args=[str(batch.pk)])
        app.send_task(ANALYSE_TASK, args=[str(batch.pk), analysis_ids])
    marker = upload(api, sample_archive(["a0194.wav"]), "after.zip")
    wait_for_batch(marker["id"])  # one queue, one worker: the duplicates ran before it

    batch.refresh_from_db()
    assert Recording.objects.filter(batch=batch).count() == 3
    assert (batch.done_count, batch.total_count) == (3, 3)
    _assert_one_prediction_each(batch)


def test_it_writes_a_chunk_once_when_two_deliveries_race(
    default_model: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivery A claims, its claim goes stale and B re-claims; A's late results change nothing."""
    from jobs.services import analysis, ingest, queue
    from workers.engine import classify

    # This test plays both deliveries itself: a worker left running by another
    # test must not ingest the batch first.
    monkeypatch.setattr(queue, "send_ingest", lambda batch: None)
    created = upload(api, sample_archive(["a0033.wav", "a0035.wav"]), "race.zip")
    ids = ingest.ingest_batch(created["id"], queue_analysis=False)
    batch = Batch.objects.get(pk=created["id"])
    claims_a = analysis.claim_pending(batch.pk, ids)
    fetched, _ = next(analysis.fetch_in_groups(claims_a, group=len(claims_a)))
    results_a = classify(batch.model_version, fetched)

    Analysis.objects.filter(pk__in=ids).update(status=Analysis.Status.PENDING)  # as the sweeper does
    analysis.analyse_chunk(batch.pk, ids, classify=classify)
    late = analysis.record_results(batch, results_a)

    batch.refresh_from_db()
    assert late.counts.total() == 0
    assert (batch.done_count, batch.status) == (2, Batch.Status.COMPLETED)
    _assert_one_prediction_each(batch)


class _FlakyProxy:
    """A TCP relay to the S3 server that refuses connections until opened."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.mark.slow
def test_it_retries_while_storage_is_unavailable_then_completes(
    tmp_path: Path, default_model: Any, api: Any, settings: Any, shared_worker: Any
) -> None:
    from urllib.parse import urlsplit

    endpoint = urlsplit(settings.S3_ENDPOINT_URL)
    proxy = _FlakyProxy((endpoint.hostname or "127.0.0.1", endpoint.port or 80))
    with only_own_consumers("ingest", "analyze", purge=False):
        try:
            worker = launch_worker(
                tmp_path / "flaky.log",
                queues="ingest,analyze",
                env={"S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"},
            )
            try:
                created = upload(api, sample_archive(["a0033.wav", "a0035.wav"]), "outage.zip")
                poll_until(lambda: "retry: Retry in" in (tmp_path / "flaky.log").read_text(), timeout=60)
                proxy.open()
                batch = wait_for_batch(created["id"], timeout=90)
            finally:
                kill_worker(worker)
        finally:
            proxy.close()

    assert batch.status == Batch.Status.COMPLETED
    assert "StorageUnavailable" in (tmp_path / "flaky.log").read_text()
    _assert_one_prediction_each(batch)
