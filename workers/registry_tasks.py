"""Tasks of the model registry and re-analysis: thin shells over jobs.services.

They take ids, are safe to run twice (status checks and conditional updates in
the services) and retry only transient errors, like the pipeline's tasks.
"""

from celery import shared_task

from jobs.services import queue, reanalysis, registry
from workers.tasks import RETRY


@shared_task(name=queue.SMOKE_TEST_TASK, **RETRY)
def check_model(version_id: int, make_default: bool) -> str:
    """Smoke-test a bundle uploaded through the API; activate or reject it."""
    return registry.finish_check(version_id, make_default=make_default).status


@shared_task(name=queue.START_REANALYSIS_TASK, **RETRY)
def start_reanalysis(batch_id: str) -> int:
    return len(reanalysis.start_reanalysis(batch_id))


@shared_task(name=queue.START_DUE_REANALYSES_TASK, **RETRY)
def start_due_reanalyses() -> list[str]:
    """Beat: start the scheduled re-analyses whose time has come."""
    return reanalysis.start_due_reanalyses()
