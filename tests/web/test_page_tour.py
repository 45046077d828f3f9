"""Every page in a real browser, with rows built by factories (no worker)."""

from typing import Any

import pytest

from jobs.services import plots
from tests.conftest import SAMPLES
from tests.web import builders
from tests.web.conftest import log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE_FILES = sorted(SAMPLES.glob("*.wav"))[:6]
SUMMARY = {
    "class_counts": {"normal": 3, "abnormal": 3},
    "quality_counts": {"good": 4, "poor": 2},
    "metrics": {
        "sensitivity": 0.75,
        "specificity": 0.6667,
        "macc": 0.7083,
        "labelled": 6,
        "confusion_matrix": {"classes": ["normal", "abnormal"], "matrix": [[2, 1], [1, 2]]},
    },
}


def test_it_shows_every_page_of_a_finished_batch(
    live_server: Any, page: Any, member: Any, organisation: Any
) -> None:
    batch = builders.finished_batch(organisation, member, files=SAMPLE_FILES)
    builders.add_report(batch, SUMMARY)
    builders.rejected_recording(batch, "clinic/notes.txt", "not an audio file")
    recording = batch.recordings.filter(status="stored").first()
    plots.render_recording_plots(recording.pk, batch.model_version_id)

    page.goto(f"{live_server.url}/login/")
    screenshot(page, "01-login")
    log_in(page, live_server.url, member.username)
    screenshot(page, "02-dashboard")
    assert page.get_by_role("link", name="Clinic week 12").is_visible()

    page.goto(f"{live_server.url}/batches/")
    screenshot(page, "03-batch-list")

    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    assert page.locator("[data-metric=Sensitivity]").inner_text() == "75.0 %"
    screenshot(page, "04-batch-finished")

    page.goto(f"{live_server.url}/recordings/{recording.pk}/")
    page.wait_for_selector("img[alt^='Spectrogram']")
    screenshot(page, "05-recording")
