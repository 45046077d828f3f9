"""Enqueueing by task name, so `jobs` never imports the worker package.

Every send happens after the surrounding transaction commits: a worker must
never receive an id whose row it cannot see yet.
"""

import logging
from collections.abc import Sequence
from uuid import UUID

import kombu.exceptions
import redis.exceptions
from django.db import transaction

from config.celery_app import app
from jobs.models import Batch

INGEST_TASK = "lubdub.ingest_batch"
ANALYSE_TASK = "lubdub.analyze_chunk"
REPORTS_TASK = "lubdub.write_reports"
INTERACTIVE_QUEUE = "interactive"
# What a send raises when the broker cannot be reached (kombu wraps most as OperationalError).
BROKER_ERRORS = (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError, ConnectionError)

logger = logging.getLogger(__name__)


def _queue_for(batch: Batch, default: str) -> str:
    # A single recording skips the bulk queues entirely so it overtakes them.
    return INTERACTIVE_QUEUE if batch.priority == Batch.Priority.INTERACTIVE else default


def send_ingest(batch: Batch) -> None:
    """Queue the ingest after commit; without a broker the batch waits for the sweeper.

    The batch row is committed by then: failing the request would make the
    client upload again and create a second batch.
    """
    queue = _queue_for(batch, "ingest")
    batch_id = str(batch.pk)

    def send() -> None:
        try:
            app.send_task(INGEST_TASK, args=[batch_id], queue=queue)
        except BROKER_ERRORS as exc:
            logger.warning(
                "batch %s: ingest not queued (%s: %s); the sweeper queues it again",
                batch_id,
                type(exc).__name__,
                exc,
            )

    transaction.on_commit(send)


def send_analysis(batch: Batch, analysis_ids: Sequence[int], *, chunk_size: int) -> int:
    """Queue the analyses in chunks; returns how many tasks were sent."""
    queue = _queue_for(batch, "analyze")
    batch_id = str(batch.pk)
    chunks = [list(analysis_ids[i : i + chunk_size]) for i in range(0, len(analysis_ids), chunk_size)]

    def send() -> None:
        for chunk in chunks:
            app.send_task(ANALYSE_TASK, args=[batch_id, chunk], queue=queue)

    transaction.on_commit(send)
    return len(chunks)


def send_reports(batch_id: UUID | str, priority: str) -> None:
    """Queue the reports after commit; without a broker the sweeper queues them later.

    The batch is finished by then: failing the analysis task that finished it
    would only run its chunk again for nothing.
    """
    queue = INTERACTIVE_QUEUE if priority == Batch.Priority.INTERACTIVE else "reports"

    def send() -> None:
        try:
            app.send_task(REPORTS_TASK, args=[str(batch_id)], queue=queue)
        except BROKER_ERRORS as exc:
            logger.warning(
                "batch %s: reports not queued (%s: %s); the sweeper queues them again",
                batch_id,
                type(exc).__name__,
                exc,
            )

    transaction.on_commit(send)
