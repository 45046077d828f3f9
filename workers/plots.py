"""The plot-drawing task: a thin shell around jobs.services.plots."""

from celery import shared_task

from jobs.services import plots
from jobs.storage import StorageUnavailable


@shared_task(
    name=plots.TASK_NAME,
    queue=plots.TASK_QUEUE,
    autoretry_for=(StorageUnavailable,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
)
def render_plots(recording_id: int, model_version_id: int | None) -> list[str]:
    return plots.render_recording_plots(recording_id, model_version_id)
