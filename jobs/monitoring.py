"""Queue depth and worker liveness at a glance, for the dashboard and the API.

Both are best-effort readings: a broker or worker that does not answer within a
short timeout is reported as such instead of slowing the page down.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.utils import timezone

from jobs.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 1.0
INSPECT_TIMEOUT_SECONDS = 0.8
HEARTBEAT_FRESH = timedelta(minutes=3)
# kombu's Redis transport keeps one list per queue and priority step; the
# default steps are 0, 3, 6 and 9, the first one under the bare queue name.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


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


def queue_names() -> list[str]:
    from config.celery_app import QUEUES

    return list(QUEUES)


def _queue_keys(name: str) -> list[str]:
    return [name if step == 0 else f"{name}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each Celery queue (Redis LLEN), or None if Redis is down."""
    client = redis.Redis.from_url(
        settings.CELERY_BROKER_URL,
        socket_timeout=BROKER_TIMEOUT_SECONDS,
        socket_connect_timeout=BROKER_TIMEOUT_SECONDS,
    )
    names = queue_names()
    try:
        pipeline = client.pipeline(transaction=False)
        for name in names:
            for key in _queue_keys(name):
                pipeline.llen(key)
        lengths = pipeline.execute()
    except redis.RedisError:
        logger.warning("broker did not answer the queue depth check", exc_info=True)
        return None
    finally:
        client.close()
    steps = len(PRIORITY_STEPS)
    return {name: int(sum(lengths[i * steps : (i + 1) * steps])) for i, name in enumerate(names)}


def answering_workers() -> dict[str, list[str]]:
    """Workers that answer a broadcast within a short timeout, with their queues."""
    from config.celery_app import app

    try:
        replies = app.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS).active_queues() or {}
    except (OSError, redis.RedisError):
        logger.warning("broker did not answer the worker inspection", exc_info=True)
        return {}
    return {hostname: sorted(queue["name"] for queue in queues) for hostname, queues in replies.items()}


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
