"""A stopped worker's claims: renewed while it lives, re-queued within about a minute once it dies."""

import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from config.celery_app import app
from jobs.models import Analysis, Batch
from jobs.services import analysis, ingest, queue, sweeper
from lubdub_client.batches import status_line
from tests.factories import BatchFactory, MembershipFactory, RecordingFactory
from tests.faults import assert_batch_ended_well
from tests.pipeline.conftest import (
    kill_worker,
    launch_worker,
    only_own_consumers,
    sample_archive,
    upload,
    wait_for_batch,
)
from tests.polling import poll_until

NAMES = ["a0033.wav", "a0035.wav", "c0002.wav", "e00014.wav"]


class _Beat(threading.Thread):
    """Runs the sweep every `every` seconds, as beat does, and keeps what each found."""

    def __init__(self, every: float) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.summaries: list[sweeper.SweepSummary] = []
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.wait(self.every):
                self.summaries.append(sweeper.sweep())
        finally:
            connection.close()

    def stop(self) -> None:
        self._halt.set()
        self.join()


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_claims_of_a_chunk_that_outlives_the_lease(
    default_model: Any, api: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.engine import classify

    settings.LUBDUB_CLAIM_HEARTBEAT_SECONDS = 0.2
    settings.LUBDUB_CLAIM_LEASE_SECONDS = 0.6
    monkeypatch.setattr(queue, "send_ingest", lambda batch: None)  # this test runs the chunk itself
    created = upload(api, sample_archive(NAMES), "slow.zip")
    ids = ingest.ingest_batch(created["id"], queue_analysis=False)

    def slow_classify(*args: Any) -> Any:
        time.sleep(2.0)  # more than three leases: only the heartbeat keeps the claims
        return classify(*args)

    beat = _Beat(every=0.1)
    beat.start()
    try:
        summary = analysis.analyse_chunk(created["id"], ids, classify=slow_classify)
    finally:
        beat.stop()

    batch = Batch.objects.get(pk=created["id"])
    assert len(beat.summaries) > 10
    assert sum(found.requeued + found.abandoned for found in beat.summaries) == 0
    assert (summary.claimed, batch.requeued_count, batch.status) == (len(NAMES), 0, Batch.Status.COMPLETED)
    assert set(Analysis.objects.filter(batch=batch).values_list("attempts", flat=True)) == {1}
    assert_batch_ended_well(batch)


@pytest.mark.django_db(transaction=True)
def test_it_requeues_claims_no_worker_renews_and_the_batch_page_says_so(
    client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    membership = MembershipFactory()
    batch = BatchFactory(
        organisation=membership.organisation,
        created_by=membership.user,
        status=Batch.Status.ANALYSING,
        pending_count=3,
        started_at=timezone.now(),
    )
    stale = [RecordingFactory(batch=batch), RecordingFactory(batch=batch)]
    fresh = RecordingFactory(batch=batch)
    lease = timedelta(seconds=settings.LUBDUB_CLAIM_LEASE_SECONDS)
    for recording, held_for in [(stale[0], lease * 2), (stale[1], lease * 2), (fresh, lease / 3)]:
        Analysis.objects.create(
            batch=batch,
            recording=recording,
            status=Analysis.Status.RUNNING,
            attempts=1,
            claimed_at=timezone.now() - held_for,
        )
    sent: list[list[int]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: sent.append(args[1]))
    client.force_login(membership.user)

    summary = sweeper.sweep()
    page = client.get(reverse("batch-detail", args=[batch.pk])).content.decode()
    live = client.get(reverse("batch-progress", args=[batch.pk])).json()
    shown = client.get(f"/api/v1/batches/{batch.pk}/").json()

    batch.refresh_from_db()
    requeued = Analysis.objects.filter(recording__in=stale)
    assert summary.requeued == 2 and sorted(sent[0]) == sorted(requeued.values_list("pk", flat=True))
    assert set(requeued.values_list("status", flat=True)) == {Analysis.Status.PENDING}
    assert Analysis.objects.get(recording=fresh).status == Analysis.Status.RUNNING
    assert (batch.requeued_count, batch.requeued_at is not None) == (2, True)
    assert "A worker stopped; 2 recordings re-queued." in page
    assert live["requeued_text"] == "A worker stopped; 2 recordings re-queued."
    assert (shown["requeued_count"], shown["requeued_at"] is not None) == (2, True)
    assert "a worker stopped, 2 re-queued" in status_line(shown)


@pytest.mark.slow
def test_it_requeues_a_killed_workers_claims_within_a_minute(
    tmp_path: Path, default_model: Any, api: Any, member: Any, settings: Any
) -> None:
    # This test's own workers are the only consumers of the analysis.
    with only_own_consumers("ingest", "analyze"):
        first = launch_worker(
            tmp_path / "first.log", queues="ingest,analyze", env={"LUBDUB_ANALYSIS_CHUNK": "24"}
        )
        created = upload(api, sample_archive(copies=4), "killed.zip")
        running = Analysis.objects.filter(batch_id=created["id"], status=Analysis.Status.RUNNING)
        poll_until(running.exists, timeout=90)
        kill_worker(first, signal.SIGKILL)
        killed_at = time.monotonic()
        held = running.count()
        assert held > 0, "the worker finished its chunk before it could be killed"

        beat = _Beat(every=1.0)  # beat's sweep, at a pace that measures the lease, not the schedule
        beat.start()
        try:
            poll_until(lambda: any(found.requeued for found in beat.summaries), timeout=90)
        finally:
            beat.stop()
        requeued_after = time.monotonic() - killed_at
        second = launch_worker(tmp_path / "second.log", queues="ingest,analyze,reports")
        try:
            batch = wait_for_batch(created["id"], timeout=120)
        finally:
            kill_worker(second)

    client = Client()
    client.force_login(member)
    page = client.get(reverse("batch-detail", args=[batch.pk])).content.decode()
    assert requeued_after < 60, f"re-queued {requeued_after:.0f} s after the worker died"
    assert requeued_after > settings.LUBDUB_CLAIM_LEASE_SECONDS - 2 * settings.LUBDUB_CLAIM_HEARTBEAT_SECONDS
    assert batch.status == Batch.Status.COMPLETED
    assert batch.requeued_count == held
    assert f"A worker stopped during this batch; {held} recordings were re-queued." in page
    assert_batch_ended_well(batch)
