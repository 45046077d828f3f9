"""Pages through Django's test client: access rules, filters, escaping, errors."""

import io
import uuid
from typing import Any

import pytest
import soundfile
from django.test import Client

from jobs.models import Batch
from tests import factories
from tests.web import builders
from tests.web.conftest import join

pytestmark = pytest.mark.django_db


def page_urls(batch: Batch, recording_id: int) -> list[str]:
    return [
        f"/batches/{batch.pk}/",
        f"/batches/{batch.pk}/progress",
        f"/batches/{batch.pk}/cancel",
        f"/batches/{batch.pk}/delete",
        f"/batches/{batch.pk}/reports/csv",
        f"/recordings/{recording_id}/",
        f"/recordings/{recording_id}/plots",
        f"/recordings/{recording_id}/plots/overview.png",
        f"/recordings/{recording_id}/audio",
    ]


def test_it_sends_anonymous_visitors_to_the_login_page(client: Client, organisation: Any) -> None:
    batch = factories.BatchFactory(organisation=organisation)
    recording = factories.RecordingFactory(batch=batch)
    for url in ["/", "/batches/", "/upload/", "/status/queues", *page_urls(batch, recording.pk)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url


def test_it_answers_404_for_another_organisations_batch(
    client: Client, outsider: Any, organisation: Any
) -> None:
    batch = factories.BatchFactory(organisation=organisation, name="North only")
    recording = factories.RecordingFactory(batch=batch)
    client.force_login(outsider)
    for url in page_urls(batch, recording.pk):
        assert client.get(url).status_code == 404, url
        assert client.post(url).status_code in (404, 405), url
    assert "North only" not in client.get("/batches/").content.decode()
    assert Batch.objects.filter(pk=batch.pk).exists()


def test_it_answers_404_for_a_batch_that_does_not_exist(member_client: Client) -> None:
    response = member_client.get(f"/batches/{uuid.uuid4()}/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "We could not find that page" in body
    assert "Traceback" not in body and "No such batch" not in body


def test_it_rejects_a_post_without_csrf_token(member: Any, organisation: Any) -> None:
    batch = factories.BatchFactory(organisation=organisation, status=Batch.Status.ANALYSING)
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    for url in [f"/batches/{batch.pk}/cancel", f"/batches/{batch.pk}/delete", "/upload/", "/organisation"]:
        response = client.post(url, {"organisation": organisation.slug})
        assert response.status_code == 403, url
        assert "This form could not be accepted" in response.content.decode()
    batch.refresh_from_db()
    assert batch.status == Batch.Status.ANALYSING


def test_it_renders_a_script_file_name_as_text(member_client: Client, organisation: Any, member: Any) -> None:
    batch = factories.BatchFactory(organisation=organisation, name="<b>bold</b> batch")
    payload = "<script>alert('x')</script><img src=x onerror=alert(1)>.wav"
    recording = builders.rejected_recording(batch, payload, "<i>not audio</i>")
    for url in [f"/batches/{batch.pk}/", f"/recordings/{recording.pk}/", "/batches/", "/"]:
        body = member_client.get(url).content.decode()
        assert "<script>alert" not in body, url
        assert "<img src=x" not in body, url
        assert "<b>bold</b>" not in body, url
    body = member_client.get(f"/recordings/{recording.pk}/").content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body
    assert "&lt;i&gt;not audio&lt;/i&gt;" in body


def test_it_lists_only_the_current_organisations_batches_and_switches(client: Client, member: Any) -> None:
    north = member.organisations.get()
    south = factories.OrganisationFactory(name="South Clinic", slug="south")
    join(member, south)
    factories.BatchFactory(organisation=north, name="north batch")
    factories.BatchFactory(organisation=south, name="south batch")
    client.force_login(member)
    body = client.get("/batches/").content.decode()
    assert "north batch" in body and "south batch" not in body
    response = client.post("/organisation", {"organisation": "south", "next": "/batches/"})
    assert response.status_code == 302 and response["Location"] == "/batches/"
    body = client.get("/batches/").content.decode()
    assert "south batch" in body and "north batch" not in body


def test_it_refuses_to_switch_to_an_organisation_the_user_is_not_in(
    member_client: Client, outsider: Any
) -> None:
    assert member_client.post("/organisation", {"organisation": "south"}).status_code == 404


def test_it_does_not_redirect_off_site_after_switching(member_client: Client, organisation: Any) -> None:
    response = member_client.post("/organisation", {"organisation": "north", "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_it_filters_batches_by_status_name_and_date(member_client: Client, organisation: Any) -> None:
    factories.BatchFactory(organisation=organisation, name="ward A", status=Batch.Status.COMPLETED)
    factories.BatchFactory(organisation=organisation, name="ward B", status=Batch.Status.FAILED)
    factories.BatchFactory(organisation=organisation, name="clinic C", status=Batch.Status.COMPLETED)
    body = member_client.get("/batches/", {"status": "completed", "name": "ward"}).content.decode()
    assert "ward A" in body and "ward B" not in body and "clinic C" not in body
    body = member_client.get("/batches/", {"created_from": "2001-01-01", "created_to": "2001-12-31"})
    assert "ward A" not in body.content.decode()


def test_it_paginates_the_batch_list(member_client: Client, organisation: Any) -> None:
    for index in range(30):
        factories.BatchFactory(organisation=organisation, name=f"batch number {index:02d}")
    first = member_client.get("/batches/").content.decode()
    second = member_client.get("/batches/", {"page": 2}).content.decode()
    assert first.count("batch number") == 25
    assert second.count("batch number") == 5
    assert "30 in all" in first


def test_it_filters_and_sorts_recordings(member_client: Client, organisation: Any, member: Any) -> None:
    from tests.conftest import SAMPLES

    batch = builders.finished_batch(organisation, member, files=sorted(SAMPLES.glob("*.wav"))[:4])
    url = f"/batches/{batch.pk}/"
    rows = member_client.get(url, {"label": "abnormal"}).content.decode().split("<tbody>")[1]
    assert rows.count('class="badge abnormal"') == 2
    assert 'class="badge normal"' not in rows
    body = member_client.get(url, {"sort": "-confidence"}).content.decode()
    rows = body.split("<tbody>")[1]
    confidences = [row.split('class="num">')[1].split("<")[0] for row in rows.split("<tr>")[1:]]
    assert confidences == ["82 %", "82 %", "65 %", "64 %"]
    body = member_client.get(url, {"quality": "poor"}).content.decode()
    assert body.split("<tbody>")[1].count("<tr>") == 1


def test_it_reports_progress_as_json(member_client: Client, organisation: Any) -> None:
    batch = factories.BatchFactory(
        organisation=organisation,
        status=Batch.Status.ANALYSING,
        total_count=10,
        done_count=3,
        failed_count=1,
        pending_count=6,
    )
    state = member_client.get(f"/batches/{batch.pk}/progress").json()
    assert state["percent"] == 40
    assert state["finished"] is False
    assert "4 of 10 analysed" in state["counts_text"]


def test_it_shows_queue_depth_and_workers(member_client: Client) -> None:
    body = member_client.get("/status/queues").content.decode()
    for queue in ("interactive", "ingest", "analyze", "reports"):
        assert f'data-queue="{queue}"' in body


def test_it_renders_the_server_error_page_without_details(client: Client, settings: Any) -> None:
    from django.template.loader import render_to_string

    body = render_to_string("500.html")
    assert "Something went wrong on our side" in body


def test_it_draws_and_stores_the_plots_of_a_recording(organisation: Any, member: Any) -> None:
    from jobs import storage
    from jobs.services import plots
    from tests.conftest import SAMPLES

    batch = builders.finished_batch(organisation, member, files=sorted(SAMPLES.glob("*.wav"))[:1])
    recording = batch.recordings.get()
    written = plots.render_recording_plots(recording.pk, batch.model_version_id)
    expected = plots.plot_set(recording, batch.model_version)
    assert sorted(written) == sorted(expected.keys.values())
    for name in ("overview", "spectrogram"):
        assert storage.read_bytes(expected.keys[name]).startswith(b"\x89PNG")
    listening = soundfile.info(io.BytesIO(storage.read_bytes(expected.listen_key)))
    assert listening.samplerate == 8000 and listening.channels == 1
    assert listening.duration == pytest.approx(recording_seconds(SAMPLES / "a0033.wav"), abs=0.01)
    state = plots.plot_state(recording, batch.model_version)
    assert state.ready and sorted(state.available) == ["listen", "overview", "spectrogram"]


def recording_seconds(path: Any) -> float:
    return float(soundfile.info(str(path)).duration)


def test_it_marks_plots_failed_for_undecodable_audio(organisation: Any, member: Any) -> None:
    from jobs import storage
    from jobs.services import plots

    batch = factories.BatchFactory(organisation=organisation, model_version=builders.screening_model())
    recording = factories.RecordingFactory(batch=batch, sha256="e" * 64, storage_key="recordings/" + "e" * 64)
    storage.put_bytes(recording.storage_key, b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    plots.render_recording_plots(recording.pk, batch.model_version_id)
    state = plots.plot_state(recording, batch.model_version)
    assert state.failed and not state.ready


def test_it_ignores_a_malformed_batch_hint_on_the_recording_page(
    member_client: Client, organisation: Any
) -> None:
    recording = factories.RecordingFactory(batch=factories.BatchFactory(organisation=organisation))
    assert member_client.get(f"/recordings/{recording.pk}/", {"batch": "not-a-uuid"}).status_code == 200


def test_it_asks_before_cancelling_and_then_cancels(member_client: Client, organisation: Any) -> None:
    batch = factories.BatchFactory(organisation=organisation, status=Batch.Status.ANALYSING, total_count=3)
    page = member_client.get(f"/batches/{batch.pk}/cancel")
    assert page.status_code == 200 and "Cancel this batch?" in page.content.decode()
    batch.refresh_from_db()
    assert batch.status == Batch.Status.ANALYSING
    response = member_client.post(f"/batches/{batch.pk}/cancel", follow=True)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED
    assert "The batch was cancelled" in response.content.decode()


def test_it_asks_before_deleting_and_then_deletes(member_client: Client, organisation: Any) -> None:
    batch = factories.BatchFactory(organisation=organisation, status=Batch.Status.COMPLETED, name="old week")
    assert "This cannot be undone" in member_client.get(f"/batches/{batch.pk}/delete").content.decode()
    assert Batch.objects.filter(pk=batch.pk).exists()
    response = member_client.post(f"/batches/{batch.pk}/delete", follow=True)
    assert not Batch.objects.filter(pk=batch.pk).exists()
    assert response.redirect_chain[-1][0] == "/batches/"
    assert "old week" in response.content.decode()  # in the confirmation message only
    assert "No batches match" in response.content.decode()


def test_it_refuses_an_upload_that_is_not_audio(member_client: Client) -> None:
    model_version = builders.screening_model(is_default=True)
    notes = io.BytesIO(b"just some notes, not a recording")
    notes.name = "notes.txt"
    response = member_client.post(
        "/upload/",
        {"file": notes, "name": "x", "model": model_version.pk},
        headers={"x-requested-with": "XMLHttpRequest"},
    )
    assert response.status_code == 415
    assert "neither a zip archive nor a recognised audio file" in response.json()["error"]
    assert not Batch.objects.exists()


def test_it_redirects_a_plain_form_upload_to_the_new_batch(member_client: Client, organisation: Any) -> None:
    from tests.conftest import SAMPLES

    model_version = builders.screening_model(is_default=True)
    with (SAMPLES / "a0033.wav").open("rb") as recording:
        response = member_client.post("/upload/", {"file": recording, "model": model_version.pk})
    batch = Batch.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/batches/{batch.pk}/"
    assert batch.organisation == organisation and batch.priority == Batch.Priority.INTERACTIVE


def test_the_upload_form_gives_the_batch_its_webhook(
    member_client: Client, organisation: Any, settings: Any
) -> None:
    from tests.conftest import SAMPLES

    settings.LUBDUB_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # plain http to a local receiver
    model_version = builders.screening_model(is_default=True)
    assert 'name="webhook_url"' in member_client.get("/upload/").content.decode()
    with (SAMPLES / "a0033.wav").open("rb") as recording:
        response = member_client.post(
            "/upload/",
            {"file": recording, "model": model_version.pk, "webhook_url": "http://127.0.0.1:9/hook"},
        )
    assert response.status_code == 302
    assert Batch.objects.get().webhook_url == "http://127.0.0.1:9/hook"


def test_the_upload_form_refuses_a_webhook_it_may_not_post_to(member_client: Client) -> None:
    from tests.conftest import SAMPLES

    model_version = builders.screening_model(is_default=True)
    with (SAMPLES / "a0033.wav").open("rb") as recording:
        response = member_client.post(
            "/upload/",
            {"file": recording, "model": model_version.pk, "webhook_url": "https://10.0.0.7/hook"},
            headers={"x-requested-with": "XMLHttpRequest"},
        )
    assert response.status_code == 400
    assert "private" in response.json()["error"].lower()
    assert not Batch.objects.exists()


def test_it_links_reports_through_short_lived_urls(
    member_client: Client, organisation: Any, member: Any
) -> None:
    from jobs.services.reports import write_reports
    from tests.conftest import SAMPLES

    batch = builders.finished_batch(organisation, member, files=sorted(SAMPLES.glob("*.wav"))[:2])
    write_reports(batch.pk)
    body = member_client.get(f"/batches/{batch.pk}/").content.decode()
    for fmt in ("pdf", "html", "csv", "json"):
        assert f"/batches/{batch.pk}/reports/{fmt}" in body
        response = member_client.get(f"/batches/{batch.pk}/reports/{fmt}")
        assert response.status_code == 302
        assert "X-Amz-Expires=" in response["Location"] or "/api/v1/files/" in response["Location"]
    assert member_client.get(f"/batches/{batch.pk}/reports/xml").status_code == 404


def test_it_serves_plots_and_audio_from_the_filesystem_backend(
    member_client: Client, organisation: Any, member: Any, filesystem_storage: Any
) -> None:
    from jobs.services import plots
    from tests.conftest import SAMPLES

    batch = builders.finished_batch(organisation, member, files=[SAMPLES / "a0033.wav"])
    recording = batch.recordings.get()
    assert member_client.get(f"/recordings/{recording.pk}/audio").status_code == 404
    plots.render_recording_plots(recording.pk, batch.model_version_id)
    state = member_client.get(f"/recordings/{recording.pk}/plots?model={batch.model_version_id}").json()
    assert state["ready"] and set(state["images"]) == {"overview", "spectrogram"}
    image = member_client.get(state["images"]["overview"])
    assert image["Content-Type"] == "image/png" and image.content.startswith(b"\x89PNG")
    audio = member_client.get(state["audio"])
    assert audio["Content-Type"] == "audio/wav"
    assert b"".join(audio.streaming_content).startswith(b"RIFF")


def test_it_serves_only_plot_images_from_the_plot_url(member_client: Client, organisation: Any) -> None:
    recording = factories.RecordingFactory(batch=factories.BatchFactory(organisation=organisation))
    assert member_client.get(f"/recordings/{recording.pk}/plots/listen.png").status_code == 404


def test_it_refuses_a_too_large_upload_before_reading_it(member_client: Client, settings: Any) -> None:
    model_version = builders.screening_model(is_default=True)
    settings.LUBDUB_MAX_UPLOAD_BYTES = 1024
    archive = io.BytesIO(b"PK" + b"\0" * 200_000)
    archive.name = "big.zip"
    response = member_client.post("/upload/", {"file": archive, "model": model_version.pk})
    assert response.status_code == 413
    assert "the limit is 1024 bytes" in response.content.decode()
    assert not Batch.objects.exists()
