"""The API during an outage: 503 with Retry-After, no duplicate batches, the sweeper catches up."""

import io
from datetime import timedelta
from typing import Any

import kombu.exceptions
import pytest
import redis.exceptions
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import storage
from jobs.models import Batch
from jobs.services import access, sweeper, uploads
from tests.conftest import free_port
from tests.factories import MembershipFactory
from tests.pipeline.conftest import sample_archive, upload


def _archive(name: str = "one.zip") -> io.BytesIO:
    handle = io.BytesIO(sample_archive(["a0033.wav"]))
    handle.name = name
    return handle


def _post(api: APIClient, key: str) -> Any:
    return api.post("/api/v1/batches/", {"file": _archive()}, format="multipart", HTTP_IDEMPOTENCY_KEY=key)


def test_it_accepts_an_upload_while_the_broker_is_down_and_the_sweeper_queues_it(
    api: APIClient, default_model: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from config.celery_app import app

    with monkeypatch.context() as broker_down:
        # A fresh producer pool for a broker URL nothing listens on. setitem, not
        # setattr: undoing setattr would pin broker_write_url to the URL it read
        # (the shared broker's), and a later test that changes broker_url would
        # still send there.
        broker_down.setitem(app.conf, "broker_write_url", f"redis://127.0.0.1:{free_port()}/0")
        broker_down.setattr(app, "_pool", None)
        broker_down.setattr(app.amqp, "_producer_pool", None)
        with caplog.at_level("WARNING", logger="jobs.services.queue"):
            created = upload(api, sample_archive(["a0033.wav"]), "one.zip")

    batch = Batch.objects.get(pk=created["id"])
    assert batch.status == Batch.Status.PENDING
    assert f"batch {batch.pk}: ingest not queued" in caplog.text
    sent: list[tuple[str, list[str], str]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: sent.append((name, args, queue)))
    Batch.objects.filter(pk=batch.pk).update(created_at=timezone.now() - timedelta(hours=1))

    summary = sweeper.sweep()

    assert summary.reingested == 1
    assert sent == [("lubdub.ingest_batch", [str(batch.pk)], "ingest")]


def test_it_returns_the_first_batch_to_a_retry_with_the_same_idempotency_key(
    api: APIClient, default_model: Any
) -> None:
    first = _post(api, "submit-7f3a")
    retry = _post(api, "submit-7f3a")
    other = _post(api, "submit-other")

    assert (first.status_code, retry.status_code, other.status_code) == (201, 200, 201)
    assert retry.json()["id"] == first.json()["id"] != other.json()["id"]
    assert Batch.objects.count() == 2


def test_it_keeps_idempotency_keys_apart_per_user(api: APIClient, default_model: Any) -> None:
    someone_else = APIClient()
    someone_else.force_authenticate(MembershipFactory().user)

    mine, theirs = _post(api, "same-key"), _post(someone_else, "same-key")

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


def test_it_answers_a_retry_that_raced_the_first_request_with_the_first_batch(
    member: Any, default_model: Any
) -> None:
    organisation = member.organisations.get()

    def create() -> Batch:
        return uploads.create_batch_from_upload(
            user=member, organisation=organisation, upload=_archive(), filename="one.zip", idempotency_key="k"
        )

    first, second = create(), create()

    assert second.pk == first.pk
    assert list(Batch.objects.values_list("pk", flat=True)) == [first.pk]


def test_it_refuses_an_unprintable_idempotency_key(api: APIClient, default_model: Any) -> None:
    response = _post(api, "x" * 300)

    assert response.status_code == 400
    assert response.json()["code"] == "bad_idempotency_key"
    assert not Batch.objects.exists()


OUTAGES = [
    (OperationalError("could not connect to server"), "database"),
    (InterfaceError("connection already closed"), "database"),
    (kombu.exceptions.OperationalError("Error 111 connecting"), "broker"),
    (redis.exceptions.ConnectionError("Connection refused"), "broker"),
    (storage.StorageUnavailable("read timeout"), "storage"),
]


@pytest.mark.parametrize(
    ("error", "dependency"), OUTAGES, ids=["db-operational", "db-interface", "kombu", "redis", "storage"]
)
def test_it_answers_json_503_with_retry_after_when_a_dependency_is_down(
    api: APIClient, monkeypatch: pytest.MonkeyPatch, error: Exception, dependency: str
) -> None:
    def down(user: Any) -> Any:
        raise error

    monkeypatch.setattr(access, "visible_batches", down)

    response = api.get("/api/v1/batches/")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "30"
    assert response.json()["code"] == f"{dependency}_unavailable"


def test_it_still_answers_500_to_a_bug(api: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(user: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(access, "visible_batches", broken)
    api.raise_request_exception = False

    assert api.get("/api/v1/batches/").status_code == 500
