import socket
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from config.celery_app import app
from jobs.models import WorkerHeartbeat
from tests.polling import poll_until
from workers.tasks import heartbeat

DEPTH_DATABASE = 13  # a Redis database no other test uses


def test_it_configures_celery_for_safe_redelivery() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"]
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert {queue.name for queue in conf.task_queues} >= {"ingest", "analyze", "interactive", "reports"}


def test_it_routes_tasks_to_their_queues() -> None:
    router = app.amqp.router
    assert router.route({}, "lubdub.ingest_batch")["queue"].name == "ingest"
    assert router.route({}, "lubdub.analyze_chunk")["queue"].name == "analyze"
    assert router.route({}, "lubdub.write_reports")["queue"].name == "reports"


@pytest.mark.django_db(transaction=True)
def test_it_runs_a_task_in_a_real_worker_through_redis(celery_worker: object) -> None:
    heartbeat.delay()

    poll_until(WorkerHeartbeat.objects.exists, 60, interval=0.2, message="no heartbeat row")

    row = WorkerHeartbeat.objects.get()
    # Named as Celery names the worker (`test-...@host`), not by the machine alone.
    assert row.hostname.startswith("test-") and row.hostname.endswith(f"@{socket.gethostname()}")
    assert row.queues == sorted(queue.name for queue in app.conf.task_queues)


@pytest.mark.django_db(transaction=True)
def test_it_lists_a_worker_once_under_its_celery_name_on_the_dashboard(celery_worker: object) -> None:
    from jobs import monitoring

    heartbeat.delay()
    poll_until(WorkerHeartbeat.objects.exists, 60, interval=0.2, message="no heartbeat row")
    beat = WorkerHeartbeat.objects.get().hostname

    listed = {worker.hostname: worker for worker in monitoring.workers()}

    # The heartbeat and the broadcast's answer are one worker, not a second one named "vm".
    assert beat in listed and listed[beat].answering and listed[beat].last_seen is not None
    assert socket.gethostname() not in listed


def test_it_registers_schedules_and_routes_tasks_only_by_the_names_of_the_queue_module() -> None:
    from jobs.services import queue

    app.autodiscover_tasks(["workers"], force=True)
    app.autodiscover_tasks(["workers"], related_name="plots", force=True)
    app.autodiscover_tasks(["workers"], related_name="registry_tasks", force=True)
    names = {value for key, value in vars(queue).items() if key.endswith("_TASK")}

    assert {name for name in app.tasks if name.startswith("lubdub.")} == names
    assert {entry["task"] for entry in app.conf.beat_schedule.values()} <= names
    assert set(queue.ROUTES) <= names and set(queue.ROUTES.values()) <= set(queue.QUEUES)


def _private_broker(settings: Any) -> str:
    """A Redis database of its own on the test Redis, emptied, as the broker the depths are read from."""
    parts = urlsplit(settings.CELERY_BROKER_URL)
    url = urlunsplit(parts._replace(path=f"/{DEPTH_DATABASE}"))
    redis.Redis.from_url(url).flushdb()
    settings.CELERY_BROKER_URL = url
    return url


def test_it_counts_the_messages_waiting_in_each_queue_whatever_their_priority(settings: Any) -> None:
    from jobs import monitoring

    url = _private_broker(settings)
    waiting = {"ingest": [0, 0, 0], "analyze": [0, 5, 9], "reports": [4]}
    with app.connection_for_write(url) as connection:
        producer = connection.Producer()
        for name, priorities in waiting.items():
            for priority in priorities:
                producer.publish(
                    {"n": 1}, routing_key=name, declare=[app.amqp.queues[name]], priority=priority
                )

    depths = monitoring.queue_depths()

    assert depths == {"interactive": 0, "ingest": 3, "analyze": 3, "reports": 1, "default": 0}
    # The priorities above 0 are kept apart by the transport: counting only the plain queue would miss them.
    assert redis.Redis.from_url(url).llen("analyze") == 1


def test_it_reads_no_depths_from_a_broker_that_does_not_answer(settings: Any) -> None:
    from jobs import monitoring
    from tests.conftest import free_port

    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()

    assert monitoring.queue_depths() is None
    assert time.monotonic() - started < 5
