"""Batch progress from the counters in Postgres, and finalising a batch once."""

from dataclasses import dataclass
from uuid import UUID

from django.db.models import Case, Q, Value, When
from django.utils import timezone

from jobs.models import Batch
from jobs.services import queue

# Statuses before the batch's recordings are all known.
UNPACKING = (Batch.Status.PENDING, Batch.Status.SCHEDULED, Batch.Status.INGESTING)


@dataclass(frozen=True)
class Progress:
    status: str
    status_display: str
    total: int
    done: int
    failed: int
    rejected: int
    skipped: int
    pending: int
    percent: int
    eta_seconds: float | None
    finished: bool
    # Recordings re-queued because the worker analysing them stopped.
    requeued: int = 0
    # Why the reports could not be written ("" when they were, or are still to come).
    report_error: str = ""
    # The files the upload holds, known from its listing before its rows are written (None until then).
    expected_total: int | None = None

    @property
    def processed(self) -> int:
        return self.done + self.failed + self.skipped

    @property
    def unpacking(self) -> bool:
        """The recordings are still being read from the upload (or chosen, for a re-analysis)."""
        return self.status in UNPACKING

    @property
    def indeterminate(self) -> bool:
        """No share to show yet: the upload is being read and how many files it holds is not known."""
        return self.unpacking and self.expected_total is None


def batch_progress(batch: Batch) -> Progress:
    processed = batch.done_count + batch.failed_count + batch.skipped_count
    # Of the files the upload holds: the listing's count while rows are still being
    # written, so the share only grows, as files are analysed or refused at upload.
    to_analyse = max(batch.total_count, batch.expected_total or 0) - batch.rejected_count
    if batch.is_finished:
        percent = 100
    elif batch.status in UNPACKING and batch.expected_total is None:
        # Rows are written a group at a time while the archive is read, so the rows'
        # total grows: a share of it would go backwards. The share waits for the total.
        percent = 0
    else:
        percent = int(processed * 100 / to_analyse) if to_analyse > 0 else 0
    eta = None
    if batch.started_at and processed and not batch.is_finished:
        elapsed = (timezone.now() - batch.started_at).total_seconds()
        left = max(to_analyse - processed, batch.pending_count, 0)  # rows not written yet count too
        eta = round(elapsed / processed * left, 1)
    return Progress(
        status=batch.status,
        status_display=batch.get_status_display(),
        total=batch.total_count,
        done=batch.done_count,
        failed=batch.failed_count,
        rejected=batch.rejected_count,
        skipped=batch.skipped_count,
        pending=batch.pending_count,
        percent=min(percent, 100),
        eta_seconds=eta,
        finished=batch.is_finished,
        requeued=batch.requeued_count,
        report_error=batch.report_error,
        expected_total=batch.expected_total,
    )


def finalise_if_done(batch_id: UUID | str) -> bool:
    """Close an analysing batch with nothing left pending; exactly one caller wins.

    Call inside the transaction that brought the pending count to zero: the
    reports task is queued when it commits.
    """
    with_errors = Q(failed_count__gt=0) | Q(rejected_count__gt=0)
    final_status = Case(
        When(with_errors, then=Value(Batch.Status.COMPLETED_WITH_ERRORS)),
        default=Value(Batch.Status.COMPLETED),
    )
    closed = Batch.objects.filter(pk=batch_id, status=Batch.Status.ANALYSING, pending_count__lte=0).update(
        status=final_status, finished_at=timezone.now()
    )
    if closed:
        priority = Batch.objects.values_list("priority", flat=True).get(pk=batch_id)
        queue.send_reports(batch_id, priority)
    return bool(closed)
