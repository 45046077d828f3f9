"""The Celery application, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from django.conf import settings
from kombu import Queue

from jobs.services import queue
from ml.threads import pin_threads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
# Two worker processes each using the default BLAS/TensorFlow thread pools ran
# 4-9x slower on a 2-core machine than single-threaded ones: pin the pools to
# one thread before numpy or TensorFlow is imported, and scale with processes.
pin_threads(1, override=False)

app = Celery("lubdub")
app.config_from_object("django.conf:settings", namespace="CELERY")

# Each queue gets its own routing key: with the default one they would all share
# a key, and every message would be copied into every queue.
app.conf.task_queues = [Queue(name, routing_key=name) for name in queue.QUEUES]
app.conf.task_default_queue = queue.DEFAULT_QUEUE
# Routing lives here so a task sent without a queue goes to its own; single-file
# uploads are sent to `interactive` explicitly (jobs.services.queue).
app.conf.task_routes = {
    **{name: {"queue": destination} for name, destination in queue.ROUTES.items()},
    "lubdub.*": {"queue": queue.DEFAULT_QUEUE},
}
app.conf.beat_schedule = {
    "heartbeat": {"task": queue.HEARTBEAT_TASK, "schedule": 30.0},
    "sweep": {"task": queue.SWEEP_TASK, "schedule": float(settings.CELERY_BEAT_SWEEP_SECONDS)},
    "start-due-reanalyses": {"task": queue.START_DUE_REANALYSES_TASK, "schedule": 60.0},
    # Listing every audio object: cheap per hour (one LIST per 1,000 packs), not per minute.
    "sweep-storage": {"task": queue.SWEEP_STORAGE_TASK, "schedule": 3600.0},
    # Uploads expire after hours (LUBDUB_UPLOAD_EXPIRY_SECONDS): an hourly pass is soon enough.
    "expire-uploads": {"task": queue.EXPIRE_UPLOADS_TASK, "schedule": 3600.0},
}
app.autodiscover_tasks(["workers"])
app.autodiscover_tasks(["workers"], related_name="plots")
app.autodiscover_tasks(["workers"], related_name="registry_tasks")
