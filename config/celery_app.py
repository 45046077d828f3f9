"""The Celery application, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from django.conf import settings
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
# Two worker processes each using the default BLAS/TensorFlow thread pools ran
# 4-9x slower on a 2-core machine than single-threaded ones: pin the pools to
# one thread before numpy or TensorFlow is imported, and scale with processes.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

app = Celery("lubdub")
app.config_from_object("django.conf:settings", namespace="CELERY")

QUEUES = ("interactive", "ingest", "analyze", "reports", "default")
# Each queue gets its own routing key: with the default one they would all share
# a key, and every message would be copied into every queue.
app.conf.task_queues = [Queue(name, routing_key=name) for name in QUEUES]
# Routing lives here so the producer never has to name a queue; the analyse
# task is sent to `interactive` explicitly for single-file uploads.
app.conf.task_routes = {
    "lubdub.ingest_batch": {"queue": "ingest"},
    "lubdub.analyze_chunk": {"queue": "analyze"},
    "lubdub.write_reports": {"queue": "reports"},
    "lubdub.*": {"queue": "default"},
}
app.conf.beat_schedule = {
    "heartbeat": {"task": "lubdub.heartbeat", "schedule": 30.0},
    "sweep": {"task": "lubdub.sweep", "schedule": float(settings.CELERY_BEAT_SWEEP_SECONDS)},
    "start-due-reanalyses": {"task": "lubdub.start_due_reanalyses", "schedule": 60.0},
    # Listing every audio object: cheap per hour (one LIST per 1,000 packs), not per minute.
    "sweep-storage": {"task": "lubdub.sweep_storage", "schedule": 3600.0},
    # Uploads expire after hours (LUBDUB_UPLOAD_EXPIRY_SECONDS): an hourly pass is soon enough.
    "expire-uploads": {"task": "lubdub.expire_uploads", "schedule": 3600.0},
}
app.autodiscover_tasks(["workers"])
app.autodiscover_tasks(["workers"], related_name="plots")
app.autodiscover_tasks(["workers"], related_name="registry_tasks")
