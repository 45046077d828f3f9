"""Reports that cannot be written: retried, said on the batch, written by a later sweep."""

import html
import re
import socket
import subprocess
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from config.celery_app import app
from jobs import storage
from jobs.models import Batch, Report
from jobs.services import lifecycle, report_pdf, reports, sweeper
from lubdub_client.batches import status_line
from tests.factories import BatchFactory, MembershipFactory, PredictionFactory
from tests.faults import assert_batch_ended_well, lose_everything
from tests.pipeline.conftest import (
    kill_worker,
    launch_worker,
    only_own_consumers,
    sample_archive,
    upload,
    wait_for_batch,
)
from tests.polling import poll_until
from tests.web import builders

NAMES = ["a0033.wav", "c0002.wav", "e00014.wav"]


def _sent_reports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: sent.append(args[0]))
    return sent


def _finished(ago: timedelta, **fields: Any) -> Batch:
    return BatchFactory(status=Batch.Status.COMPLETED, finished_at=timezone.now() - ago, **fields)


@pytest.mark.django_db(transaction=True)
def test_it_queues_the_reports_of_a_batch_whose_failure_is_due_for_a_retry_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    due = _finished(
        timedelta(minutes=2), report_error="x", report_retry_at=timezone.now() - timedelta(seconds=1)
    )
    _finished(timedelta(minutes=2), report_error="x", report_retry_at=timezone.now() + timedelta(minutes=4))
    sent = _sent_reports(monkeypatch)

    first, second = sweeper.sweep(), sweeper.sweep()

    assert (first.reports, second.reports) == (1, 0)
    assert sent == [str(due.pk)]
    due.refresh_from_db()
    assert due.report_retry_at is not None and due.report_retry_at > timezone.now()


@pytest.mark.django_db(transaction=True)
def test_it_queues_reports_that_never_came_after_the_claim_timeout(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    lost = _finished(timedelta(seconds=settings.LUBDUB_CLAIM_TIMEOUT_SECONDS + 5))
    _finished(timedelta(seconds=5))  # its report task may still be on its way
    written = _finished(timedelta(hours=1))
    Report.objects.create(batch=written, model_version=written.model_version, format="csv", storage_key="k")
    BatchFactory(status=Batch.Status.CANCELLED, finished_at=timezone.now() - timedelta(hours=1))
    sent = _sent_reports(monkeypatch)

    summary = sweeper.sweep()

    assert summary.reports == 1
    assert sent == [str(lost.pk)]


class _RefusingStore:
    """An 'S3 server' that accepts each connection and closes it at once, counting them."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            client.close()

    def close(self) -> None:
        self._server.close()


@pytest.mark.django_db(transaction=True)
def test_a_batch_deleted_while_its_reports_are_written_keeps_none_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = builders.completed_batch(BatchFactory().organisation, None)
    PredictionFactory(recording__batch=batch, raw_probability=0.8)
    keys = [storage.report_key(batch.pk, batch.model_version.slug, fmt) for fmt in Report.Format.values]
    draw = report_pdf.write_pdf

    def deleted_first(*args: Any, **kwargs: Any) -> None:
        # The user deletes the batch after its CSV, JSON and HTML are stored.
        assert Report.objects.filter(batch=batch).count() == 3
        lifecycle.delete_batch(Batch.objects.get(pk=batch.pk))
        draw(*args, **kwargs)

    monkeypatch.setattr(report_pdf, "write_pdf", deleted_first)

    assert reports.write_reports(batch.pk) == []

    assert not Batch.objects.filter(pk=batch.pk).exists()
    assert not Report.objects.filter(batch_id=batch.pk).exists()
    assert [key for key in keys if storage.exists(key)] == []


@pytest.mark.django_db
def test_it_retries_a_report_while_storage_fails_then_says_why_on_the_batch(settings: Any) -> None:
    from workers.tasks import RETRY, write_reports

    batch = _finished(timedelta(seconds=1))
    store = _RefusingStore()
    try:
        settings.LUBDUB_STORAGE_MAX_ATTEMPTS = 1
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                **settings.STORAGES["default"],
                "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "endpoint_url": store.endpoint},
            },
        }
        # Eagerly, each retry runs at once: the backoff is Celery's, the count is ours.
        outcome = write_reports.apply(args=[str(batch.pk)])
    finally:
        store.close()

    assert outcome.failed() and isinstance(outcome.result, storage.StorageUnavailable)
    assert store.connections == RETRY["max_retries"] + 1
    batch.refresh_from_db()
    assert batch.report_error_code == "storage_unavailable"
    assert batch.report_error.startswith("Storage did not answer")
    assert batch.report_retry_at is not None
    assert batch.report_retry_at - timezone.now() > timedelta(
        seconds=settings.LUBDUB_REPORT_RETRY_SECONDS - 30
    )


@pytest.fixture
def own_s3(private_s3: subprocess.Popen[bytes], settings: Any) -> str:
    """A private S3-API server under the bucket name a test worker's settings use."""
    options = settings.STORAGES["default"]["OPTIONS"]
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {**options, "bucket_name": "lubdub-test"}},
    }
    storage.ensure_bucket()
    return str(options["endpoint_url"])


@pytest.mark.slow
def test_it_says_when_reports_cannot_be_written_and_a_later_sweep_writes_them(
    tmp_path: Path, own_s3: str, default_model: Any, api: Any, member: Any, settings: Any
) -> None:
    # This test's worker is the only consumer; it reads reports only once storage is lost.
    with only_own_consumers("ingest", "analyze", "reports"):
        name = f"reports-{tmp_path.name}@{socket.gethostname()}"
        worker = launch_worker(
            tmp_path / "worker.log",
            queues="ingest,analyze",
            name=name,
            env={"S3_ENDPOINT_URL": own_s3, "LUBDUB_TEST_S3_CREATE_BUCKET": "0"},
        )
        try:
            created = upload(api, sample_archive(NAMES), "reports.zip")
            batch = wait_for_batch(created["id"], timeout=120)
            lose_everything(settings)  # the in-memory store restarted: bucket and objects gone
            app.control.add_consumer("reports", destination=[name], reply=True, timeout=5)
            poll_until(lambda: Batch.objects.get(pk=batch.pk).report_error != "", timeout=60)

            batch.refresh_from_db()
            client = Client()
            client.force_login(member)
            page = html.unescape(client.get(reverse("batch-detail", args=[batch.pk])).content.decode())
            shown = api.get(f"/api/v1/batches/{batch.pk}/").json()

            storage.ensure_bucket()  # storage is back (as `manage.py prepare_storage` does)
            Batch.objects.filter(pk=batch.pk).update(report_retry_at=timezone.now())
            swept = sweeper.sweep()
            poll_until(lambda: Report.objects.filter(batch=batch).count() == 4, timeout=60)
            again = sweeper.sweep()
        finally:
            kill_worker(worker)

    assert batch.status == Batch.Status.COMPLETED
    assert batch.report_error_code == "storage_bucket_missing"
    assert 'bucket "lubdub-test" does not exist' in batch.report_error
    assert "The reports could not be written." in page and 'bucket "lubdub-test" does not exist' in page
    assert re.search(r"data-reports-wait[^>]*hidden", page), "the page must not wait for reports that failed"
    assert shown["report_error_code"] == "storage_bucket_missing" and shown["report_retry_at"]
    assert "; reports not written: The storage bucket" in status_line(shown)
    assert (swept.reports, again.reports) == (1, 0)
    batch.refresh_from_db()
    assert (batch.report_error_code, batch.report_error, batch.report_retry_at) == ("", "", None)
    csv_report = Report.objects.get(batch=batch, format="csv")
    assert storage.read_bytes(csv_report.storage_key).decode().count("\n") == len(NAMES) + 1
    assert_batch_ended_well(batch)


@pytest.mark.django_db
def test_it_shows_no_report_problem_for_a_batch_whose_reports_are_on_their_way(client: Client) -> None:
    membership = MembershipFactory()
    batch = _finished(timedelta(seconds=1), organisation=membership.organisation, created_by=membership.user)
    client.force_login(membership.user)

    page = client.get(reverse("batch-detail", args=[batch.pk])).content.decode()

    assert "The reports could not be written" not in page
    assert re.search(r"data-reports-wait[^>]*>", page) and not re.search(
        r"data-reports-wait[^>]*hidden", page
    )
