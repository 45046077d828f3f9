"""Webhooks: a finished batch's summary posted, signed, to a receiver run by the test.

The pipeline runs on the session's shared worker; deliveries (queue `default`)
on a worker of this module's own, allowed to reach 127.0.0.1 and backing off
for a fraction of a second instead of half a minute.
"""

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.models import Batch, Membership, WebhookDelivery
from jobs.services import webhooks
from tests.factories import BatchFactory, MembershipFactory, OrganisationFactory
from tests.pipeline.conftest import (
    kill_worker,
    launch_worker,
    only_own_consumers,
    sample_archive,
    upload,
    wait_for_batch,
)
from tests.polling import poll_until

TWO = ["a0033.wav", "a0035.wav"]


class Receiver:
    """A local HTTP server that records each POST and answers with the statuses it is given."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.requests.append((dict(self.headers), body))
                code = received.answers.pop(0) if received.answers else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?from=lubdub"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture(scope="module")
def webhook_worker(shared_worker: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    log = tmp_path_factory.mktemp("webhooks") / "worker.log"
    with only_own_consumers("default", purge=False):
        worker = launch_worker(
            log,
            queues="default",
            name=f"webhooks-{time.monotonic_ns()}@{socket.gethostname()}",
            env={
                "LUBDUB_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
                "LUBDUB_WEBHOOK_BACKOFF_SECONDS": "0.3",
                "LUBDUB_WEBHOOK_ATTEMPTS": "3",
            },
        )
        try:
            yield
        finally:
            kill_worker(worker)


@pytest.fixture
def allow_local(settings: Any) -> None:
    settings.LUBDUB_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def browser_for(user: Any) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def admin(transactional_db: None) -> Any:
    return MembershipFactory(role=Membership.Role.ADMIN).user


def verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: recompute HMAC-SHA256 over "<t>." + body and compare."""
    fields = dict(part.split("=", 1) for part in headers["X-LubDub-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(fields["t"])) < 300
    return fresh and hmac.compare_digest(expected, fields["v1"])


def secret_of(client: APIClient, organisation: Any) -> str:
    answer = client.get(f"/api/v1/organisations/{organisation.slug}/webhook/")
    assert answer.status_code == 200, answer.content
    return str(answer.json()["secret"])


def test_it_posts_a_signed_summary_when_a_batch_completes(
    default_model: Any, admin: Any, receiver: Receiver, webhook_worker: None, allow_local: None
) -> None:
    api = client_for(admin)
    organisation = admin.organisations.get()
    created = upload(api, sample_archive(TWO), name="March clinic", webhook_url=receiver.url)
    batch = wait_for_batch(created["id"])
    poll_until(lambda: len(receiver.requests) == 1, timeout=120)

    headers, body = receiver.requests[0]
    assert verified(secret_of(api, organisation), headers, body)
    assert not verified("another secret", headers, body)
    assert headers["X-LubDub-Event"] == "batch.finished"
    summary = json.loads(body)
    assert summary["batch"]["id"] == created["id"]
    assert summary["batch"]["name"] == "March clinic"
    assert summary["batch"]["status"] == batch.status == Batch.Status.COMPLETED
    assert summary["batch"]["model_version"] == default_model.slug
    assert summary["batch"]["finished_at"] == batch.finished_at.isoformat()
    assert summary["counts"]["files"] == 2 and summary["counts"]["done"] == 2
    assert sum(summary["counts"]["by_label"].values()) == 2
    assert sum(summary["counts"]["by_decision"].values()) == 2
    assert summary["reports_ready"] is True
    assert summary["links"]["page"] == f"/batches/{created['id']}/"
    assert summary["links"]["report_csv"] == f"/api/v1/batches/{created['id']}/reports/csv/"

    log = api.get(f"/api/v1/batches/{created['id']}/deliveries/").json()
    assert [(row["attempt"], row["status_code"], row["delivered"]) for row in log] == [(1, 200, True)]
    assert log[0]["url"] == receiver.url
    page = browser_for(admin).get(f"/batches/{created['id']}/")
    assert b"Webhook to 127.0.0.1: delivered on attempt 1 (HTTP 200" in page.content


def test_it_retries_a_receiver_that_answers_500(
    default_model: Any, admin: Any, receiver: Receiver, webhook_worker: None, allow_local: None
) -> None:
    receiver.answers = [500]
    api = client_for(admin)
    secret = secret_of(api, admin.organisations.get())
    created = upload(api, sample_archive(TWO[:1]), webhook_url=receiver.url)
    poll_until(lambda: len(receiver.requests) == 2, timeout=120)
    poll_until(lambda: WebhookDelivery.objects.filter(batch_id=created["id"], delivered=True).exists())

    assert all(verified(secret, headers, body) for headers, body in receiver.requests)
    assert [json.loads(body)["batch"]["id"] for _, body in receiver.requests] == [created["id"]] * 2
    log = api.get(f"/api/v1/batches/{created['id']}/deliveries/").json()
    assert [(row["attempt"], row["status_code"], row["delivered"]) for row in log] == [
        (1, 500, False),
        (2, 200, True),
    ]
    assert "500" in log[0]["error"] and log[0]["next_attempt_at"] is not None
    assert log[1]["next_attempt_at"] is None and log[1]["error"] == ""
    time.sleep(1)  # longer than the next backoff: nothing more is posted once delivered
    assert len(receiver.requests) == 2


def test_it_gives_up_after_the_last_attempt(
    default_model: Any, admin: Any, receiver: Receiver, webhook_worker: None, allow_local: None
) -> None:
    receiver.answers = [503, 503, 503, 503]
    api = client_for(admin)
    created = upload(api, sample_archive(TWO[:1]), webhook_url=receiver.url)
    poll_until(
        lambda: WebhookDelivery.objects.filter(batch_id=created["id"], attempt=3).exclude(error="").exists()
    )
    time.sleep(2)  # longer than any backoff left: the worker's limit is 3 attempts
    assert len(receiver.requests) == 3
    log = api.get(f"/api/v1/batches/{created['id']}/deliveries/").json()
    assert [row["status_code"] for row in log] == [503, 503, 503]
    assert not any(row["delivered"] for row in log) and log[-1]["next_attempt_at"] is None


def test_it_announces_a_cancelled_batch(
    admin: Any, receiver: Receiver, webhook_worker: None, allow_local: None
) -> None:
    api = client_for(admin)
    organisation = admin.organisations.get()
    batch = BatchFactory(organisation=organisation, status=Batch.Status.PENDING, webhook_url=receiver.url)
    assert api.post(f"/api/v1/batches/{batch.pk}/cancel/").status_code == 200
    poll_until(lambda: len(receiver.requests) == 1, timeout=60)
    headers, body = receiver.requests[0]
    assert verified(secret_of(api, organisation), headers, body)
    assert json.loads(body)["batch"]["status"] == "cancelled"


def test_it_uses_the_organisations_default_webhook(admin: Any, allow_local: None, receiver: Receiver) -> None:
    api = client_for(admin)
    organisation = admin.organisations.get()
    answer = api.put(
        f"/api/v1/organisations/{organisation.slug}/webhook/", {"url": receiver.url}, format="json"
    )
    assert answer.status_code == 200, answer.content
    first_secret = answer.json()["secret"]
    organisation.refresh_from_db()
    assert webhooks.batch_url(organisation, "") == receiver.url
    assert webhooks.batch_url(organisation, "http://127.0.0.1:9/other") == "http://127.0.0.1:9/other"
    rotated = api.put(
        f"/api/v1/organisations/{organisation.slug}/webhook/",
        {"url": receiver.url, "rotate_secret": True},
        format="json",
    ).json()
    assert rotated["secret"] != first_secret and len(rotated["secret"]) == 64


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://example.org/hook", "webhook_https_required"),
        ("https://127.0.0.1/hook", "webhook_private_address"),
        ("https://localhost:8443/hook", "webhook_private_address"),
        ("https://[::1]/hook", "webhook_private_address"),
        ("https://169.254.169.254/latest/meta-data", "webhook_private_address"),
        ("https://10.0.0.7/hook", "webhook_private_address"),
        ("https://user:secret@example.org/hook", "bad_webhook_url"),
        ("ftp://example.org/hook", "bad_webhook_url"),
        ("https://host.invalid/hook", "webhook_unresolvable"),
    ],
)
def test_it_refuses_webhooks_it_may_not_post_to(default_model: Any, member: Any, url: str, code: str) -> None:
    answer = client_for(member).post(
        "/api/v1/batches/",
        {"file": _named(sample_archive(TWO[:1])), "webhook_url": url},
        format="multipart",
    )
    assert answer.status_code == 400, answer.content
    assert answer.json()["code"] == code
    assert not Batch.objects.exists()


def test_it_refuses_a_private_address_at_delivery_when_not_allowed(
    transactional_db: None, receiver: Receiver, settings: Any
) -> None:
    # Allowed when the batch was made, no longer when it is delivered: nothing is sent.
    settings.LUBDUB_WEBHOOK_ALLOWED_HOSTS = []
    batch = BatchFactory(status=Batch.Status.COMPLETED, webhook_url=receiver.url)
    assert webhooks.attempt_delivery(batch.pk) is None
    assert receiver.requests == []
    row = WebhookDelivery.objects.get(batch=batch)
    assert row.status_code is None and not row.delivered and "https" in row.error
    batch.webhook_url = receiver.url.replace("http://", "https://")
    batch.save()
    WebhookDelivery.objects.all().delete()
    assert webhooks.attempt_delivery(batch.pk) is None
    assert "private, loopback or reserved" in WebhookDelivery.objects.get(batch=batch).error
    assert receiver.requests == []


def test_it_shows_deliveries_only_to_the_organisations_admins(admin: Any) -> None:
    organisation = admin.organisations.get()
    batch = BatchFactory(
        organisation=organisation, status=Batch.Status.COMPLETED, webhook_url="https://a.example/"
    )
    WebhookDelivery.objects.create(
        batch=batch,
        url=batch.webhook_url,
        attempt=1,
        status_code=200,
        delivered=True,
        attempted_at=batch.created_at,
    )
    assert client_for(admin).get(f"/api/v1/batches/{batch.pk}/deliveries/").status_code == 200

    stranger = MembershipFactory(role=Membership.Role.ADMIN, organisation=OrganisationFactory()).user
    assert client_for(stranger).get(f"/api/v1/batches/{batch.pk}/deliveries/").status_code == 404
    assert client_for(stranger).get(f"/api/v1/organisations/{organisation.slug}/webhook/").status_code == 404

    uploader = MembershipFactory(organisation=organisation).user
    answer = client_for(uploader).get(f"/api/v1/batches/{batch.pk}/deliveries/")
    assert answer.status_code == 403 and answer.json()["code"] == "forbidden"
    assert client_for(uploader).get(f"/api/v1/organisations/{organisation.slug}/webhook/").status_code == 403
    assert b"data-webhook" in browser_for(admin).get(f"/batches/{batch.pk}/").content
    assert b"data-webhook" not in browser_for(uploader).get(f"/batches/{batch.pk}/").content


def _named(data: bytes) -> Any:
    import io

    handle = io.BytesIO(data)
    handle.name = "batch.zip"
    return handle
