"""Every page in a real browser, with rows built by factories; plots drawn by a
real worker. The upload-to-result path is in test_browser_upload.py."""

from typing import Any

import pytest
from django.utils import timezone

from jobs.models import Batch
from jobs.services.reports import write_reports
from tests import factories
from tests.conftest import SAMPLES
from tests.web import builders
from tests.web.conftest import join, log_in, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SAMPLE_FILES = sorted(SAMPLES.glob("*.wav"))[:6]
LABELS = dict(line.split(",") for line in (SAMPLES / "labels.csv").read_text().split()[1:])


def unlabelled_controls(page: Any) -> list[str]:
    """Form controls a screen reader could not name."""
    return page.evaluate(
        """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(control => control.labels.length === 0 && !control.getAttribute('aria-label'))
            .map(control => control.name)"""
    )


def test_it_shows_every_page_of_a_finished_batch(
    live_server: Any, page: Any, member: Any, organisation: Any, celery_worker: Any
) -> None:
    batch = builders.finished_batch(organisation, member, files=SAMPLE_FILES, labels=LABELS)
    builders.rejected_recording(batch, "clinic/notes.txt", "not an audio file")
    write_reports(batch.pk)
    recording = batch.recordings.filter(status="stored").first()

    page.goto(f"{live_server.url}/login/")
    screenshot(page, "01-login")
    log_in(page, live_server.url, member.username)
    page.wait_for_selector("[data-queue=analyze]")
    assert page.get_by_role("link", name="Clinic week 12").is_visible()
    assert page.get_by_text("online").count() >= 1
    screenshot(page, "02-dashboard")

    page.get_by_role("link", name="Batches", exact=True).click()
    screenshot(page, "03-batch-list")

    page.get_by_role("link", name="Clinic week 12").click()
    # Two of three abnormal and two of three normal recordings are predicted right.
    assert page.locator("[data-metric=Sensitivity]").inner_text() == "66.7 %"
    assert page.locator("[data-metric=Specificity]").inner_text() == "66.7 %"
    assert [int(cell) for cell in page.locator("table.confusion tbody td").all_inner_texts()] == [2, 1, 1, 2]
    assert page.get_by_role("link", name="HTML report").is_visible()
    assert unlabelled_controls(page) == []
    screenshot(page, "04-batch-finished")

    page.get_by_role("link", name=recording.path).click()
    # The worker draws both images on the first visit; the page swaps them in. The overview
    # image is the fallback of the interactive waveform, which hides it once drawn.
    overview = page.wait_for_selector("img[alt^='Waveform']", state="attached", timeout=60_000)
    spectrogram = page.wait_for_selector("img[alt^='Spectrogram']", timeout=60_000)
    page.wait_for_function("[...document.images].every(image => image.complete && image.naturalWidth > 0)")
    page.wait_for_selector("[data-waveform-url][data-ready=true]", timeout=60_000)
    assert page.locator("[data-overview-figure]").is_hidden()
    assert overview.evaluate("image => image.naturalWidth") == 1100
    assert spectrogram.evaluate("image => image.naturalHeight") == 300
    assert page.locator("[data-probability=abnormal]").inner_text() == "82 %"
    assert page.locator("[data-heart-rate]").inner_text() == "72 bpm"
    # The player streams through a short-lived authenticated link.
    page.wait_for_function("document.querySelector('audio').duration > 30")
    screenshot(page, "05-recording")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    screenshot(page, "10-batch-on-a-phone")

    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("link", name="Delete…").click()
    screenshot(page, "15-delete-confirmation")
    page.get_by_role("button", name="Delete for good").click()
    page.wait_for_url(f"{live_server.url}/batches/")
    assert "were deleted" in page.locator(".messages").inner_text()
    assert not Batch.objects.filter(pk=batch.pk).exists()


def test_it_follows_a_running_batch_to_the_end(
    live_server: Any, page: Any, member: Any, organisation: Any
) -> None:
    model_version = builders.screening_model()
    batch = factories.BatchFactory(
        organisation=organisation,
        created_by=member,
        model_version=model_version,
        name="Night shift archive",
        status=Batch.Status.ANALYSING,
        total_count=400,
        done_count=130,
        failed_count=4,
        pending_count=266,
        started_at=timezone.now() - timezone.timedelta(seconds=40),
    )
    log_in(page, live_server.url, member.username)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    assert page.locator("[data-percent]").inner_text() == "33 %"
    assert "left" in page.locator("[data-eta]").inner_text()
    screenshot(page, "06-batch-running")

    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.COMPLETED_WITH_ERRORS, done_count=396, pending_count=0, finished_at=timezone.now()
    )
    page.wait_for_selector("text=Writing the summary and reports…")
    write_reports(batch.pk)
    page.wait_for_function("document.querySelector('[data-percent]').textContent.trim() === '100 %'")
    page.wait_for_selector("[data-finished=true]")
    assert page.locator("[data-status-badge]").inner_text() == "Completed with errors"


def test_it_shows_the_upload_form_and_a_friendly_404(
    live_server: Any, page: Any, member: Any, organisation: Any
) -> None:
    builders.screening_model(is_default=True)
    log_in(page, live_server.url, member.username)
    # Wait for the upload page's own load event (the deferred script has wired the
    # drop zone); a bare wait_for_load_state could still see the previous page's.
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("link", name="Upload", exact=True).click()
    assert "default" in page.get_by_label("Model version").inner_text()
    assert unlabelled_controls(page) == []
    screenshot(page, "07-upload")
    # Keyboard: Enter on the drop zone clicks the file input (which opens the
    # chooser). The click is recorded and the native dialog kept shut: headless
    # Chromium's file-chooser event proved unreliable under load.
    page.evaluate(
        """() => document.querySelector("input[type=file]").addEventListener("click", (event) => {
            event.preventDefault();
            window.fileInputClicked = event.target.name;
        })"""
    )
    page.locator(".dropzone").press("Enter")
    page.wait_for_function("window.fileInputClicked === 'file'", timeout=5000)
    # Drag and drop: a dropped file becomes the form's file.
    page.evaluate(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["RIFF"], "dropped.wav", {type: "audio/wav"}));
            document.querySelector(".dropzone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }"""
    )
    assert page.locator("[data-chosen]").inner_text().startswith("dropped.wav")
    assert page.evaluate("document.querySelector('input[type=file]').files[0].name") == "dropped.wav"
    page.goto(f"{live_server.url}/batches/00000000-0000-0000-0000-000000000000/")
    assert page.get_by_role("heading", name="We could not find that page").is_visible()
    screenshot(page, "08-not-found")


def test_it_never_runs_a_script_from_a_file_name(
    live_server: Any, page: Any, member: Any, organisation: Any
) -> None:
    batch = factories.BatchFactory(organisation=organisation, name="<img src=x onerror=alert(1)>")
    payload = "<script>alert('name')</script><img src=x onerror=alert(2)>.wav"
    recording = builders.rejected_recording(batch, payload, "<svg onload=alert(3)>")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, live_server.url, member.username)
    for url in ["/", "/batches/", f"/batches/{batch.pk}/", f"/recordings/{recording.pk}/"]:
        page.goto(f"{live_server.url}{url}")
        page.wait_for_load_state("load")
    assert page.locator("[data-recording-path]").inner_text() == payload
    assert page.locator("main script, main img[src=x], main svg[onload]").count() == 0
    screenshot(page, "09-file-name-as-text")
    assert dialogs == []


def test_it_switches_organisation_from_the_header(
    live_server: Any, page: Any, member: Any, organisation: Any
) -> None:
    south = factories.OrganisationFactory(name="South Clinic", slug="south")
    join(member, south)
    factories.BatchFactory(organisation=south, name="South screening day", created_by=member)
    log_in(page, live_server.url, member.username)
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    page.get_by_label("Organisation").select_option("south")
    page.wait_for_selector("text=South screening day")
    assert page.get_by_label("Organisation").input_value() == "south"
    screenshot(page, "14-organisation-switched")
