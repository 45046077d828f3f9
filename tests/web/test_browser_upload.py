"""The whole path in a real browser: log in, upload a zip through the page,
watch the batch finish on a real worker, open a recording and its plots."""

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLES
from tests.web.conftest import log_in, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MEMBERS = ["a0033.wav", "a0082.wav", "c0002.wav", "e00014.wav"]
SCRIPT_NAME = "<script>alert('zip')</script>.wav"


def sample_archive(folder: Path) -> Path:
    """Four PhysioNet recordings with their labels, one under a script-like name."""
    with (SAMPLES / "labels.csv").open() as handle:
        labels = {row["path"]: row["label"] for row in csv.DictReader(handle)}
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["path", "label"])
    archive = folder / "clinic-upload.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in MEMBERS:
            bundle.write(SAMPLES / name, f"clinic/{name}")
            writer.writerow([f"clinic/{name}", labels[name]])
        bundle.write(SAMPLES / "d0001.wav", SCRIPT_NAME)
        bundle.writestr("labels.csv", rows.getvalue())
    return archive


def test_it_uploads_a_zip_and_shows_the_results(
    live_server: Any, page: Any, member: Any, screening_model_version: Any, celery_worker: Any, tmp_path: Path
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    log_in(page, live_server.url, member.username)

    page.get_by_role("link", name="Upload", exact=True).click()
    page.get_by_label("Recording or zip archive").set_input_files(str(sample_archive(tmp_path)))
    page.get_by_label("Batch name").fill("Browser upload")
    page.get_by_label("Model version").select_option(str(screening_model_version.pk))
    assert "clinic-upload.zip" in page.locator("[data-chosen]").inner_text()
    screenshot(page, "11-upload-chosen")
    # A slow link, so the upload progress bar can be seen moving.
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")
    network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 100_000},
    )
    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_function(
        """(() => {
            const value = +document.querySelector('[data-upload-progress]').getAttribute('aria-valuenow');
            return value > 10 && value < 90;
        })()"""
    )
    screenshot(page, "11b-upload-progress")
    network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    page.wait_for_url("**/batches/*/")
    page.wait_for_function(
        "document.querySelector('[data-percent]').textContent.trim() === '100 %'", timeout=180_000
    )
    page.wait_for_selector("[data-finished=true]", timeout=30_000)
    rows = page.locator("table[data-recordings] tbody tr")
    assert rows.count() == len(MEMBERS) + 1
    assert page.get_by_role("link", name=SCRIPT_NAME).is_visible()
    assert page.locator("[data-metric=Sensitivity]").count() == 1
    page.wait_for_selector("a:has-text('HTML report')", timeout=60_000)
    screenshot(page, "12-uploaded-batch-complete")

    page.get_by_role("link", name="clinic/a0033.wav").click()
    # The overview image is the interactive waveform's fallback, hidden once the canvas is drawn.
    page.wait_for_selector("img[alt^='Waveform']", state="attached", timeout=60_000)
    page.wait_for_selector("img[alt^='Spectrogram']", timeout=60_000)
    page.wait_for_function("[...document.images].every(image => image.complete && image.naturalWidth > 0)")
    page.wait_for_function("document.querySelector('audio') && document.querySelector('audio').duration > 0")
    assert page.locator("[data-predicted-label]").inner_text() in {"normal", "abnormal"}
    assert page.locator("[data-probability]").count() == 2
    screenshot(page, "13-uploaded-recording")

    page.go_back()
    page.get_by_role("link", name=SCRIPT_NAME).click()
    assert page.locator("[data-recording-path]").inner_text() == SCRIPT_NAME
    assert dialogs == []
    assert page_errors == []
