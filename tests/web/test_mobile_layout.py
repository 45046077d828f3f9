"""Pages on a phone (390 px wide) in a real browser: nothing wider than the screen, and the
recordings and patients tables shown as one card per row."""

from typing import Any

import pytest

from jobs.models import Prediction
from jobs.services import waveform
from jobs.services.reports import write_reports
from tests.conftest import SAMPLES
from tests.web import builders
from tests.web.conftest import log_in, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PHONE = {"width": 390, "height": 844}
LONG_NAME = "clinic/" + "left-upper-sternal-border-" * 4 + "a0033.wav"

# Elements that reach past the right edge of the screen, outside a box that scrolls on its own.
OVERFLOWING = """() => {
    const width = document.documentElement.clientWidth;
    const scrolls = (element) => {
        for (let node = element.parentElement; node; node = node.parentElement) {
            const style = getComputedStyle(node);
            if (["auto", "scroll", "hidden"].includes(style.overflowX)) return true;
        }
        return false;
    };
    return [...document.querySelectorAll("body *")]
        .filter((element) => element.getClientRects().length)
        .filter((element) => element.getBoundingClientRect().right > width + 0.5)
        .filter((element) => !scrolls(element))
        .map((element) => element.tagName.toLowerCase() + (element.className ? "." + element.className : ""));
}"""


def fits(page: Any) -> None:
    width = page.evaluate("document.documentElement.clientWidth")
    assert width == PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, page.evaluate(OVERFLOWING)
    assert page.evaluate("document.body.scrollWidth") <= width
    assert page.evaluate(OVERFLOWING) == []


def test_it_fits_the_batch_recording_and_patient_pages_on_a_phone(
    live_server: Any, browser: Any, member: Any, organisation: Any
) -> None:
    files = sorted(SAMPLES.glob("*.wav"))[:3]
    batch = builders.finished_batch(
        organisation, member, files=files, name="Screening day at the north clinic"
    )
    long_one = batch.recordings.order_by("id").first()
    long_one.path = LONG_NAME
    long_one.save(update_fields=["path"])
    batch.recordings.exclude(status="rejected").update(patient_id="patient-2026-north-000417", location="MV")
    builders.rejected_recording(batch, "clinic/notes-from-the-morning-session.txt", "not an audio file")
    write_reports(batch.pk)
    Prediction.objects.filter(recording=long_one).update(
        segments={"s1_s": [0.2, 1.0], "s2_s": [0.5], "segments": [["systole", 0.32, 0.5]]}
    )
    waveform.render_waveform(long_one.pk, batch.model_version_id)

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        log_in(page, live_server.url, member.username)
        page.goto(f"{live_server.url}/batches/{batch.pk}/")
        fits(page)
        rows = page.locator("table[data-recordings] tbody tr")
        assert rows.count() == 4
        # Each recording is a card: its cells stacked, each named by its column.
        assert rows.first.evaluate("row => getComputedStyle(row).display") == "block"
        assert page.locator("table[data-recordings] thead").evaluate(
            "head => head.getBoundingClientRect().height <= 1"
        )
        decision = rows.first.locator("[data-decision]")
        assert decision.evaluate("cell => getComputedStyle(cell, '::before').content") == '"Decision"'
        assert page.get_by_role("link", name=LONG_NAME).is_visible()
        screenshot(page, "18-batch-on-a-phone")

        page.get_by_role("link", name=LONG_NAME).click()
        page.wait_for_selector("[data-waveform-url][data-ready=true]")
        fits(page)
        canvas = page.locator("[data-waveform-canvas]").bounding_box()
        assert canvas["x"] >= 0 and canvas["x"] + canvas["width"] <= PHONE["width"]
        screenshot(page, "19-recording-on-a-phone")

        page.get_by_role("link", name="patient-2026-north-000417").click()
        fits(page)
        patient = page.locator("table[data-patients] tbody tr")
        assert patient.count() == 1
        assert patient.first.evaluate("row => getComputedStyle(row).display") == "block"
        assert patient.locator("[data-reading-outcome]").count() == 3
    finally:
        context.close()
