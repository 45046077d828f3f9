"""Queue and task names, and enqueueing by name, so `jobs` never imports the worker package.

Every name a task is registered, routed, scheduled and sent under is defined
here: the tasks (``@shared_task(name=...)``), the Celery app's queues, routes
and beat schedule (config.celery_app) and every sender below use these. The
module imports neither the Celery app nor the models at import time, since the
app imports it while the settings load.

Every send happens after the surrounding transaction commits: a worker must
never receive an id whose row it cannot see yet.
"""

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

import kombu.exceptions
import redis.exceptions
from django.db import transaction

if TYPE_CHECKING:
    from jobs.models import Batch

# Single-file uploads take `interactive`, so they overtake the bulk queues.
INTERACTIVE_QUEUE = "interactive"
INGEST_QUEUE = "ingest"
ANALYSE_QUEUE = "analyze"
REPORTS_QUEUE = "reports"
DEFAULT_QUEUE = "default"
QUEUES = (INTERACTIVE_QUEUE, INGEST_QUEUE, ANALYSE_QUEUE, REPORTS_QUEUE, DEFAULT_QUEUE)

INGEST_TASK = "lubdub.ingest_batch"
ANALYSE_TASK = "lubdub.analyze_chunk"
REPORTS_TASK = "lubdub.write_reports"
PLOTS_TASK = "lubdub.render_plots"
WAVEFORM_TASK = "lubdub.render_waveform"
SMOKE_TEST_TASK = "lubdub.check_model"
START_REANALYSIS_TASK = "lubdub.start_reanalysis"
START_DUE_REANALYSES_TASK = "lubdub.start_due_reanalyses"
DELIVER_WEBHOOK_TASK = "lubdub.deliver_webhook"
HEARTBEAT_TASK = "lubdub.heartbeat"
SWEEP_TASK = "lubdub.sweep"
SWEEP_STORAGE_TASK = "lubdub.sweep_storage"
EXPIRE_UPLOADS_TASK = "lubdub.expire_uploads"
# The queue of each task that has its own; every other task goes to DEFAULT_QUEUE.
# Drawing plots and waveforms decodes audio, so it stays off the web and the analysis queues.
ROUTES = {
    INGEST_TASK: INGEST_QUEUE,
    ANALYSE_TASK: ANALYSE_QUEUE,
    REPORTS_TASK: REPORTS_QUEUE,
    PLOTS_TASK: REPORTS_QUEUE,
    WAVEFORM_TASK: REPORTS_QUEUE,
}
# What a send raises when the broker cannot be reached (kombu wraps most as OperationalError).
BROKER_ERRORS = (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError, ConnectionError)

logger = logging.getLogger(__name__)


def send(name: str, args: list[Any], *, queue: str | None = None) -> None:
    """Send task ``name`` now, to ``queue`` or its own (ROUTES); raises BROKER_ERRORS."""
    # Here, not at the top: config.celery_app imports this module for the names.
    from config.celery_app import app

    app.send_task(name, args=args, queue=queue or ROUTES.get(name, DEFAULT_QUEUE))


def send_after_commit(name: str, args: list[Any]) -> None:
    transaction.on_commit(lambda: send(name, args))


def _queue_for(batch: "Batch", task: str) -> str:
    # A single recording skips the bulk queues entirely so it overtakes them.
    return INTERACTIVE_QUEUE if batch.priority == batch.Priority.INTERACTIVE else ROUTES[task]


def send_ingest(batch: "Batch") -> None:
    """Queue the ingest after commit; without a broker the batch waits for the sweeper.

    The batch row is committed by then: failing the request would make the
    client upload again and create a second batch.
    """
    queue = _queue_for(batch, INGEST_TASK)
    batch_id = str(batch.pk)

    def send_now() -> None:
        try:
            send(INGEST_TASK, [batch_id], queue=queue)
        except BROKER_ERRORS as exc:
            logger.warning(
                "batch %s: ingest not queued (%s: %s); the sweeper queues it again",
                batch_id,
                type(exc).__name__,
                exc,
            )

    transaction.on_commit(send_now)


def send_analysis(batch: "Batch", analysis_ids: Sequence[int], *, chunk_size: int) -> int:
    """Queue the analyses in chunks; returns how many tasks were sent."""
    queue = _queue_for(batch, ANALYSE_TASK)
    batch_id = str(batch.pk)
    chunks = [list(analysis_ids[i : i + chunk_size]) for i in range(0, len(analysis_ids), chunk_size)]

    def send_now() -> None:
        for chunk in chunks:
            send(ANALYSE_TASK, [batch_id, chunk], queue=queue)

    transaction.on_commit(send_now)
    return len(chunks)


def send_reports(batch_id: UUID | str, priority: str) -> None:
    """Queue the reports after commit; without a broker the sweeper queues them later.

    The batch is finished by then: failing the analysis task that finished it
    would only run its chunk again for nothing.
    """
    from jobs.models import Batch

    queue = INTERACTIVE_QUEUE if priority == Batch.Priority.INTERACTIVE else ROUTES[REPORTS_TASK]

    def send_now() -> None:
        try:
            send(REPORTS_TASK, [str(batch_id)], queue=queue)
        except BROKER_ERRORS as exc:
            logger.warning(
                "batch %s: reports not queued (%s: %s); the sweeper queues them again",
                batch_id,
                type(exc).__name__,
                exc,
            )

    transaction.on_commit(send_now)
