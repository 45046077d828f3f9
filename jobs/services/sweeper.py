"""The periodic sweep (beat): recover work that a killed worker left behind.

- analyses whose claim has not been renewed for LUBDUB_CLAIM_LEASE_SECONDS (the
  worker holding them stopped) go back to pending and are queued again, and the
  batch counts them in `requeued_count` (after MAX_ATTEMPTS claims they fail
  instead);
- pending analyses of a batch with no activity for LUBDUB_CLAIM_TIMEOUT_SECONDS
  are queued again (a lost message); claiming makes a duplicate harmless;
- batches stuck before analysis get their ingest queued again;
- analysing batches with nothing left are finalised;
- finished batches without reports get their report task queued again: at
  `report_retry_at` after a failure, or after the claim timeout when the task
  was lost;
- finished batches whose webhook was never queued (or whose task was lost) get
  their delivery queued.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from jobs.models import Analysis, Batch, Report
from jobs.services import progress, queue, webhooks

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Report tasks re-queued per sweep: a backlog of old batches is worked off a few at a time.
REPORTS_PER_SWEEP = 20


@dataclass
class SweepSummary:
    requeued: int = 0
    abandoned: int = 0
    reingested: int = 0
    finalised: int = 0
    reports: int = 0
    webhooks: int = 0


def sweep(*, stale_after: timedelta | None = None) -> SweepSummary:
    """One pass; `stale_after` (tests) replaces both the claim lease and the claim timeout."""
    now = timezone.now()
    cutoff = now - (stale_after or timedelta(seconds=settings.LUBDUB_CLAIM_TIMEOUT_SECONDS))
    lease_cutoff = now - (stale_after or timedelta(seconds=settings.LUBDUB_CLAIM_LEASE_SECONDS))
    summary = SweepSummary()
    summary.abandoned = _fail_exhausted(lease_cutoff)
    summary.requeued = _requeue_stale_claims(lease_cutoff) + _requeue_idle_batches(cutoff)
    summary.reingested = _requeue_stuck_ingests(cutoff)
    summary.finalised = _finalise_missed()
    summary.reports = _requeue_missing_reports(cutoff)
    summary.webhooks = webhooks.queue_missed(cutoff)
    if any(vars(summary).values()):
        logger.info("sweep: %s", summary)
    return summary


def _fail_exhausted(cutoff: datetime) -> int:
    """A recording that killed its worker MAX_ATTEMPTS times is failed, not retried forever."""
    total = 0
    stale = Analysis.objects.filter(
        status=Analysis.Status.RUNNING, claimed_at__lt=cutoff, attempts__gte=MAX_ATTEMPTS
    )
    for batch_id in set(stale.values_list("batch_id", flat=True)):
        with transaction.atomic():
            failed = stale.filter(batch_id=batch_id).update(
                status=Analysis.Status.FAILED,
                error_code="worker_lost",
                error_message=f"The worker analysing this recording stopped {MAX_ATTEMPTS} times.",
                finished_at=timezone.now(),
            )
            Batch.objects.filter(pk=batch_id).update(
                pending_count=F("pending_count") - failed, failed_count=F("failed_count") + failed
            )
            progress.finalise_if_done(batch_id)
        total += failed
    return total


def _requeue_stale_claims(cutoff: datetime) -> int:
    total = 0
    stale = Analysis.objects.filter(status=Analysis.Status.RUNNING, claimed_at__lt=cutoff)
    for batch in Batch.objects.filter(status=Batch.Status.ANALYSING, analyses__in=stale).distinct():
        with transaction.atomic():
            ids = list(
                stale.filter(batch=batch).select_for_update(skip_locked=True).values_list("pk", flat=True)
            )
            requeued = Analysis.objects.filter(pk__in=ids, status=Analysis.Status.RUNNING).update(
                status=Analysis.Status.PENDING
            )
            # The batch page says so: otherwise it shows "analysing" with nothing moving.
            Batch.objects.filter(pk=batch.pk).update(
                requeued_count=F("requeued_count") + requeued, requeued_at=timezone.now()
            )
            queue.send_analysis(batch, ids, chunk_size=settings.LUBDUB_ANALYSIS_CHUNK)
        if ids:
            logger.warning("batch %s: a worker stopped; %d recordings re-queued", batch.pk, len(ids))
        total += len(ids)
    return total


def _requeue_idle_batches(cutoff: datetime) -> int:
    recent = Analysis.objects.filter(batch=OuterRef("pk")).filter(
        Q(status=Analysis.Status.RUNNING) | Q(finished_at__gte=cutoff)
    )
    idle = Batch.objects.filter(status=Batch.Status.ANALYSING, started_at__lt=cutoff).exclude(Exists(recent))
    total = 0
    for batch in idle:
        ids = list(batch.analyses.filter(status=Analysis.Status.PENDING).values_list("pk", flat=True))
        with transaction.atomic():
            queue.send_analysis(batch, ids, chunk_size=settings.LUBDUB_ANALYSIS_CHUNK)
        total += len(ids)
    return total


def _requeue_stuck_ingests(cutoff: datetime) -> int:
    stuck = Batch.objects.filter(
        Q(status=Batch.Status.PENDING, created_at__lt=cutoff)
        | Q(status=Batch.Status.INGESTING, started_at__lt=cutoff)
    )
    count = 0
    for batch in stuck:
        with transaction.atomic():
            queue.send_ingest(batch)
        count += 1
    return count


def _finalise_missed() -> int:
    open_work = Analysis.objects.filter(
        batch=OuterRef("pk"), status__in=[Analysis.Status.PENDING, Analysis.Status.RUNNING]
    )
    missed = Batch.objects.filter(status=Batch.Status.ANALYSING).exclude(Exists(open_work))
    count = 0
    for batch in missed:
        with transaction.atomic():
            # Counters drifted only if a bug did; the rows are the truth.
            Batch.objects.filter(pk=batch.pk).update(pending_count=0)
            count += progress.finalise_if_done(batch.pk)
    return count


def _requeue_missing_reports(cutoff: datetime) -> int:
    now = timezone.now()
    written = Report.objects.filter(batch=OuterRef("pk"), model_version=OuterRef("model_version"))
    due = Q(report_retry_at__lte=now) | Q(report_retry_at__isnull=True, finished_at__lt=cutoff)
    missing = Batch.objects.filter(due, status__in=Batch.REPORTED).exclude(Exists(written))
    count = 0
    for batch_id, priority in missing.order_by("finished_at").values_list("pk", "priority")[
        :REPORTS_PER_SWEEP
    ]:
        with transaction.atomic():
            # Moving the retry time on is the claim: a second sweep, or the next one
            # while the task still waits in its queue, does not queue it again.
            retry_at = now + timedelta(seconds=settings.LUBDUB_REPORT_RETRY_SECONDS)
            if Batch.objects.filter(due, pk=batch_id).update(report_retry_at=retry_at):
                queue.send_reports(batch_id, priority)
                count += 1
    return count
