import socket

import pytest

from config.celery_app import app
from jobs.models import WorkerHeartbeat
from tests.polling import poll_until
from workers.tasks import heartbeat


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
    assert row.hostname == socket.gethostname()
