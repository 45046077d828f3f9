"""Celery tasks: thin shells that take ids and call services in `jobs`.

Each task is safe to run twice (claims are conditional, writes are unique) and
retries only what is transient: storage or database connections.
"""

import gc
import logging
import socket
from typing import Any

from celery import Task, shared_task
from celery.signals import celeryd_after_setup, worker_process_init
from django.db import DatabaseError, InterfaceError, close_old_connections, connections
from django.utils import timezone

from jobs import storage
from jobs.models import Batch, WorkerHeartbeat
from jobs.services import (
    analysis,
    ingest,
    lifecycle,
    media_folder,
    queue,
    reports,
    resumable,
    sweeper,
    transient,
    webhooks,
)
from workers import engine

logger = logging.getLogger(__name__)

RETRY = {
    "autoretry_for": transient.RETRIED_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


@celeryd_after_setup.connect
def _check_media_folder(**_: Any) -> None:
    """Refuse to start on filesystem storage whose folder is not the web's (see media_folder).

    Sent once the worker's log is open and before its pool forks or it consumes.
    SystemExit, since Celery logs and ignores any Exception a signal handler raises.
    """
    try:
        media_folder.check()
    except media_folder.MediaFolderMismatch as exc:
        logger.critical("refusing to start: %s", exc)
        raise SystemExit(f"lubdub worker: refusing to start: {exc}") from exc
    except (DatabaseError, InterfaceError) as exc:
        # The database is down, or not migrated yet: the worker could not work anyway.
        logger.critical("refusing to start: the media folder could not be checked: %s", exc)
        raise SystemExit(f"lubdub worker: the media folder could not be checked: {exc}") from exc
    finally:
        # In the parent, before the pool forks: no child may inherit its socket.
        connections.close_all()


@worker_process_init.connect
def _load_model(**_: Any) -> None:
    # After the fork: TensorFlow must never start in the parent it would be copied from.
    close_old_connections()
    try:
        engine.preload_default()
    except transient.RETRIED_ERRORS:
        logger.warning("could not preload the default model; it loads on first use")
    finally:
        close_old_connections()
    # Likewise the storage client, which the first ingest or chunk would otherwise build.
    try:
        storage.prepare_client()
    except Exception:  # a client that cannot be built now is built (and fails) on first use
        logger.warning("could not build the storage client; it is built on first use", exc_info=True)
    # What start-up left (Django, Celery, numba, the model: about 180,000 objects) lives
    # as long as the process. Frozen, it is out of the garbage collector's full passes,
    # which walked all of it a few times per batch (as python -m ml predict does too).
    gc.freeze()


@shared_task(name=queue.HEARTBEAT_TASK, bind=True)
def heartbeat(self: Task) -> str:
    """Record that a worker is alive and consuming, under its Celery name (`analyze@host`):
    the name the dashboard's broadcast gets answers from, so one worker is one row there,
    and two workers on one machine are two."""
    hostname = self.request.hostname or socket.gethostname()
    consumed = sorted(self.app.amqp.queues.consume_from or ())
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"last_seen": timezone.now(), "queues": consumed}
    )
    return hostname


@shared_task(name=queue.INGEST_TASK, **RETRY)
def ingest_batch(batch_id: str) -> int:
    """Read an uploaded file into recordings; a single recording is analysed right here."""
    priority = Batch.objects.values_list("priority", flat=True).filter(pk=batch_id).first()
    interactive = priority == Batch.Priority.INTERACTIVE
    analysis_ids = ingest.ingest_batch(batch_id, queue_analysis=not interactive)
    if interactive and analysis_ids:
        # One hop fewer: the interactive worker already holds the model.
        analysis.analyse_chunk(batch_id, analysis_ids, classify=engine.classify)
    # A refused archive fails the batch here; completed batches are announced with their reports.
    webhooks.notify_finished(batch_id)
    return len(analysis_ids)


# The task and queue names keep their spelling (analyze): they are what queued
# messages, worker command lines and dashboards name.
@shared_task(name=queue.ANALYSE_TASK, **RETRY)
def analyse_chunk(batch_id: str, analysis_ids: list[int]) -> int:
    summary = analysis.analyse_chunk(batch_id, analysis_ids, classify=engine.classify)
    return summary.claimed


class ReportTask(Task):
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # Retries are spent or the error is not transient: the batch says why,
        # and the sweeper queues the reports again at its report_retry_at.
        try:
            reports.record_failure(args[0], exc)
            # The batch is finished whether or not its reports are: the receiver hears of it now.
            webhooks.notify_finished(args[0], reports_done=True)
        except transient.RETRIED_ERRORS:
            logger.warning("batch %s: could not record the report failure", args[0], exc_info=True)


@shared_task(name=queue.REPORTS_TASK, base=ReportTask, **RETRY)
def write_reports(batch_id: str) -> int:
    written = reports.write_reports(batch_id)
    webhooks.notify_finished(batch_id, reports_done=True)
    return len(written)


@shared_task(name=queue.DELIVER_WEBHOOK_TASK, bind=True, **RETRY)
def deliver_webhook(self: Task, batch_id: str) -> None:
    """Post a finished batch's summary; a receiver that is down is tried again with backoff."""
    wait = webhooks.attempt_delivery(batch_id)
    if wait is not None:
        # Attempts are counted in the delivery log, not by Celery: no cap here.
        raise self.retry(countdown=wait, max_retries=None)


@shared_task(name=queue.SWEEP_TASK)
def sweep() -> dict[str, int]:
    return vars(sweeper.sweep())


@shared_task(name=queue.SWEEP_STORAGE_TASK, **RETRY)
def sweep_storage() -> int:
    """Audio objects no recording refers to (an interrupted delete or ingest) are deleted."""
    return lifecycle.sweep_orphans()


@shared_task(name=queue.EXPIRE_UPLOADS_TASK, **RETRY)
def expire_uploads() -> int:
    """Resumable uploads abandoned past their expiry: multipart uploads aborted, parts deleted."""
    return resumable.expire_abandoned()
