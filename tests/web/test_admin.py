"""The admin site lists reviews and webhook deliveries without letting anyone edit them."""

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from jobs.models import Review, WebhookDelivery
from tests import factories
from tests.web.builders import screening_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in(client: Client) -> Client:
    staff = factories.UserFactory(username="operator", is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


def test_it_lists_and_shows_reviews_read_only(admin_client_logged_in: Client, member: Any) -> None:
    batch = factories.BatchFactory(model_version=screening_model())
    recording = factories.RecordingFactory(batch=batch, path="clinic/apex.wav")
    review = Review.objects.create(
        recording=recording,
        model_version=batch.model_version,
        model_decision="normal",
        label="abnormal",
        action=Review.Action.OVERRIDDEN,
        note="Murmur at the apex",
        reviewed_by=member,
        reviewed_at=timezone.now(),
    )
    listing = admin_client_logged_in.get("/admin/jobs/review/", {"action__exact": "overridden"})
    assert listing.status_code == 200
    assert "clinic/apex.wav" in listing.content.decode()
    detail = admin_client_logged_in.get(f"/admin/jobs/review/{review.pk}/change/")
    assert detail.status_code == 200
    assert "Murmur at the apex" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()
    changed = admin_client_logged_in.post(
        f"/admin/jobs/review/{review.pk}/change/", {"label": "normal", "note": "changed"}
    )
    assert changed.status_code == 403
    assert admin_client_logged_in.get("/admin/jobs/review/add/").status_code == 403
    assert (
        admin_client_logged_in.post(f"/admin/jobs/review/{review.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    review.refresh_from_db()
    assert (review.label, review.note) == ("abnormal", "Murmur at the apex")


def test_it_lists_webhook_deliveries_read_only(admin_client_logged_in: Client) -> None:
    batch = factories.BatchFactory(name="Night shift")
    delivery = WebhookDelivery.objects.create(
        batch=batch,
        url="https://hooks.example.org/lubdub",
        attempt=1,
        status_code=500,
        error="HTTP 500",
        attempted_at=timezone.now(),
    )
    listing = admin_client_logged_in.get("/admin/jobs/webhookdelivery/", {"delivered__exact": "0"})
    assert listing.status_code == 200
    assert "https://hooks.example.org/lubdub" in listing.content.decode()
    assert admin_client_logged_in.get(f"/admin/jobs/webhookdelivery/{delivery.pk}/change/").status_code == 200
    assert admin_client_logged_in.get("/admin/jobs/webhookdelivery/add/").status_code == 403
