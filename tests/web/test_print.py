"""Printed batch and recording pages: results and the disclaimer, no navigation or controls."""

from typing import Any

import pytest

from jobs.services.reports import write_reports
from tests.conftest import SAMPLES
from tests.web import builders
from tests.web.conftest import log_in, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LABELS = dict(line.split(",") for line in (SAMPLES / "labels.csv").read_text().split()[1:])


def test_a_printed_batch_page_keeps_the_results_and_drops_the_controls(
    live_server: Any, page: Any, member: Any, organisation: Any
) -> None:
    batch = builders.finished_batch(
        organisation, member, files=sorted(SAMPLES.glob("*.wav"))[:4], labels=LABELS
    )
    recording = batch.recordings.filter(status="stored").first()
    log_in(page, live_server.url, member.username)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    assert page.locator(".site-header").is_visible()
    assert page.locator("form.filters").first.is_visible()

    page.emulate_media(media="print")

    assert not page.locator(".site-header").is_visible()
    assert not page.locator("form.filters").first.is_visible()
    assert not page.locator(".page-head .actions").first.is_visible()
    assert page.locator("h1").first.is_visible()
    assert page.get_by_role("link", name=recording.path).is_visible()  # the table of results stays
    assert "never replace" in page.locator(".site-footer").inner_text()
    assert len(page.pdf()) > 10_000  # Chromium lays the printed page out as a PDF


def test_a_printed_report_page_keeps_the_figures_and_drops_the_site_around_them(
    live_server: Any, page: Any, member: Any, organisation: Any
) -> None:
    batch = builders.finished_batch(
        organisation, member, files=sorted(SAMPLES.glob("*.wav"))[:4], labels=LABELS
    )
    write_reports(batch.pk)
    log_in(page, live_server.url, member.username)
    page.goto(f"{live_server.url}/batches/{batch.pk}/report/")
    downloads = page.locator("[data-download]")
    assert downloads.count() == 4 and downloads.first.is_visible()
    assert not page.locator("[data-printed-files]").is_visible()
    screenshot(page, "46-report-page")

    page.emulate_media(media="print")

    assert not page.locator(".site-header").is_visible()
    assert not downloads.first.is_visible()
    assert page.locator("[data-printed-files]").inner_text() == (
        "Files 1–4 of 4 are printed here; the PDF report holds every file."
    )
    assert page.locator(".report .card").first.inner_text() == "4\nfiles"
    assert (
        page.get_by_role("table", name="Review first")
        .get_by_role("cell", name="clinic/a0033.wav")
        .is_visible()
    )
    assert (
        page.get_by_role("table", name="Every file").get_by_role("cell", name="clinic/a0033.wav").is_visible()
    )
    assert page.get_by_role("cell", name="sensitivity").is_visible()
    # Landscape A4 (the print rules' @page size) and the table's titles repeated on each page.
    assert page.evaluate(
        "[...document.styleSheets].flatMap(s => [...s.cssRules]).some(r => r.cssText.includes('landscape'))"
    )
    assert (
        page.evaluate("getComputedStyle(document.querySelector('[data-report-files] thead')).display")
        == "table-header-group"
    )
    assert len(page.pdf(prefer_css_page_size=True)) > 10_000
