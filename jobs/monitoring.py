"""Queue depth and worker liveness at a glance, for the dashboard and the API.

Both are best-effort readings: a broker or worker that does not answer within a
short timeout is reported as such instead of slowing the page down.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import kombu.exceptions
import redis
from django.conf import settings
from django.utils import timezone

from jobs.models import WorkerHeartbeat
from jobs.services import queue

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 1.0
INSPECT_TIMEOUT_SECONDS = 0.8
HEARTBEAT_FRESH = timedelta(minutes=3)
BROKER_READ_ERRORS = (kombu.exceptions.KombuError, redis.RedisError, OSError)


@dataclass(frozen=True)
class Worker:
    hostname: str
    queues: list[str] = field(default_factory=list)
    last_seen: datetime | None = None
    answering: bool = False


@dataclass(frozen=True)
class QueueStatus:
    depths: dict[str, int] | None  # None when the broker did not answer
    workers: list[Worker]

    @property
    def total_waiting(self) -> int | None:
        return None if self.depths is None else sum(self.depths.values())


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each Celery queue, or None if the broker did not answer.

    Asked through kombu (a queue declaration answers with its message count), so
    the transport's own layout, such as Redis's one list per priority step, is
    kombu's business.
    """
    from config.celery_app import app

    timeouts = {"socket_timeout": BROKER_TIMEOUT_SECONDS, "socket_connect_timeout": BROKER_TIMEOUT_SECONDS}
    try:
        with app.connection_for_read(
            settings.CELERY_BROKER_URL, connect_timeout=BROKER_TIMEOUT_SECONDS, transport_options=timeouts
        ) as connection:
            connection.ensure_connection(max_retries=0)
            channel = connection.default_channel
            return {
                name: int(app.amqp.queues[name].bind(channel).queue_declare().message_count)
                for name in queue.QUEUES
            }
    except BROKER_READ_ERRORS:
        logger.warning("broker did not answer the queue depth check", exc_info=True)
        return None


def answering_workers() -> dict[str, list[str]]:
    """Workers that answer a broadcast within a short timeout, with their queues."""
    from config.celery_app import app

    try:
        replies = app.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS).active_queues() or {}
    except (OSError, redis.RedisError):
        logger.warning("broker did not answer the worker inspection", exc_info=True)
        return {}
    return {hostname: sorted(consumed["name"] for consumed in queues) for hostname, queues in replies.items()}


def workers() -> list[Worker]:
    """Answering workers plus those with a recent heartbeat row."""
    answering = answering_workers()
    fresh_after = timezone.now() - HEARTBEAT_FRESH
    seen = {
        beat.hostname: beat
        for beat in WorkerHeartbeat.objects.filter(last_seen__gte=fresh_after).order_by("hostname")
    }
    names = sorted(set(answering) | set(seen))
    return [
        Worker(
            hostname=name,
            queues=answering.get(name) or list(getattr(seen.get(name), "queues", []) or []),
            last_seen=getattr(seen.get(name), "last_seen", None),
            answering=name in answering,
        )
        for name in names
    ]


def queue_status() -> QueueStatus:
    return QueueStatus(depths=queue_depths(), workers=workers())
