"""Celery tasks: thin shells that take ids and call services in `jobs`."""

import socket

from celery import shared_task
from django.utils import timezone

from jobs.models import WorkerHeartbeat


@shared_task(name="lubdub.heartbeat")
def heartbeat() -> str:
    """Record that a worker is alive and consuming."""
    hostname = socket.gethostname()
    WorkerHeartbeat.objects.update_or_create(hostname=hostname, defaults={"last_seen": timezone.now()})
    return hostname
