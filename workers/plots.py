"""The plot-drawing tasks: thin shells around jobs.services.plots and jobs.services.waveform."""

from celery import shared_task

from jobs.services import plots, queue, waveform
from jobs.storage import StorageUnavailable


@shared_task(
    name=queue.PLOTS_TASK,
    autoretry_for=(StorageUnavailable,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
)
def render_plots(recording_id: int, model_version_id: int | None) -> list[str]:
    return plots.render_recording_plots(recording_id, model_version_id)


@shared_task(
    name=queue.WAVEFORM_TASK,
    autoretry_for=(StorageUnavailable,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
)
def render_waveform(recording_id: int, model_version_id: int | None) -> str:
    return waveform.render_waveform(recording_id, model_version_id)
