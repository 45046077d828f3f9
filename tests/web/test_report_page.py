"""The batch report in the browser at a link that stays, for the batch's organisation only, and as a PDF."""

import io
from typing import Any

import pytest
from django.test import Client
from pypdf import PdfReader

from jobs import storage
from jobs.models import Batch, Membership, Report
from jobs.pages.reports import FILES_PER_PAGE
from jobs.services import reviews
from jobs.services.reports import write_reports
from tests import factories
from tests.conftest import SAMPLES
from tests.web import builders
from tests.web.conftest import join

pytestmark = pytest.mark.django_db

LABELS = dict(line.split(",") for line in (SAMPLES / "labels.csv").read_text().split()[1:])


def _reported_batch(organisation: Any, member: Any) -> Batch:
    """Four analysed files with ground truth, one rejected, one reviewed; reports written."""
    batch = builders.finished_batch(
        organisation, member, files=sorted(SAMPLES.glob("*.wav"))[:4], labels=LABELS
    )
    builders.rejected_recording(batch, "clinic/notes.txt", "The file is not a recognised audio format.")
    Batch.objects.filter(pk=batch.pk).update(total_count=5, rejected_count=1)
    reviewed = batch.recordings.get(path="clinic/a0035.wav")
    reviews.review_recording(member, reviewed, batch=batch, label="abnormal", note="murmur at the apex")
    write_reports(batch.pk)
    return batch


def _pdf_text(batch: Batch) -> tuple[PdfReader, str]:
    report = Report.objects.get(batch=batch, format="pdf")
    data = storage.read_bytes(report.storage_key)
    assert report.size_bytes == len(data) and data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    return reader, "\n".join(page.extract_text() for page in reader.pages)


def _words(text: str) -> str:
    """The text with every run of white space as one space: a cell may wrap onto a second line."""
    return " ".join(text.split())


def test_it_writes_a_pdf_holding_the_batchs_figures_and_files(organisation: Any, member: Any) -> None:
    batch = _reported_batch(organisation, member)
    summary = Report.objects.get(batch=batch, format="json").summary

    reader, text = _pdf_text(batch)

    assert reader.metadata.title == "LubDub screening report: Clinic week 12"
    assert "Screening report: Clinic week 12" in text
    assert f"batch {batch.pk}" in text
    counts = summary["counts"]
    assert counts["files"] == 5 and counts["by_class"] == {"abnormal": 2, "normal": 2}
    assert "5\nfiles" in text and "2\nabnormal" in text and "2\nnormal" in text  # the cards
    metrics = summary["metrics"]
    for name, key in (
        ("sensitivity", "sensitivity"),
        ("specificity", "specificity"),
        ("accuracy", "accuracy"),
    ):
        assert f"{name} {metrics[key]:.3f}" in text
    assert "1 recording(s) reviewed by a clinician, 1 overridden" in text
    for recording in batch.recordings.all():
        assert f"\n{recording.path} " in text
    words = _words(text)
    # A row, cell by cell (the decision, then how it was made, on a line of its own).
    row = "clinic/a0033.wav analysed abnormal abnormal p(abnormal) 0.82, threshold 0.50 good 72 abnormal"
    assert row in words
    assert "The file is not a recognised audio format." in words
    assert "abnormal (overridden) clinician, " in words and " murmur at the apex" in words
    assert f"page 1 of {len(reader.pages)}" in text


def test_it_continues_the_files_table_over_pages_with_its_titles(organisation: Any, member: Any) -> None:
    files = 260
    batch = builders.completed_batch(organisation, member, total_count=files)
    builders.bulk_recordings(
        batch,
        # Long names wrap within their column instead of running into the next one.
        (
            f"site-{i:03}/{'very-long-folder-name-' * (3 if i % 50 == 0 else 0)}r{i:04}.wav"
            for i in range(files)
        ),
    )

    write_reports(batch.pk)
    reader, text = _pdf_text(batch)

    assert len(reader.pages) >= 4
    for number in range(files):
        assert f"r{number:04}.wav" in text
    later_pages = [page.extract_text() for page in reader.pages[2:]]
    assert all(page.count("clinician's review") == 1 for page in later_pages)  # the columns' titles


def test_the_report_page_is_a_stable_link_for_the_batchs_organisation(
    client: Client, member_client: Client, organisation: Any, member: Any, outsider: Any
) -> None:
    batch = _reported_batch(organisation, member)
    url = f"/batches/{batch.pk}/report/"
    assert url in member_client.get(f"/batches/{batch.pk}/").content.decode()

    body = member_client.get(url).content.decode()

    assert "Screening report: Clinic week 12" in body
    assert '<div class="card"><b>5</b>files</div>' in body
    assert "recording(s) reviewed by a clinician, 1 overridden" in body
    for recording in batch.recordings.all():
        assert f"<td>{recording.path}</td>" in body
    for fmt in ("pdf", "html", "csv", "json"):
        assert f'href="/batches/{batch.pk}/reports/{fmt}"' in body
    # Another member of the organisation opens the same link; nobody outside it does.
    colleague = factories.UserFactory(username="colleague")
    join(colleague, organisation, Membership.Role.UPLOADER)
    client.force_login(colleague)
    assert client.get(url).status_code == 200
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.logout()
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_report_page_shows_the_files_a_page_at_a_time(
    member_client: Client, organisation: Any, member: Any
) -> None:
    files = FILES_PER_PAGE + 5
    batch = builders.completed_batch(organisation, member, total_count=files)
    builders.bulk_recordings(batch, (f"r{i:04}.wav" for i in range(files)), predicted=False)
    write_reports(batch.pk)

    first = member_client.get(f"/batches/{batch.pk}/report/").content.decode()
    second = member_client.get(f"/batches/{batch.pk}/report/?page=2").content.decode()

    assert first.count("<tr><td>r0") == FILES_PER_PAGE and "<td>r0099.wav</td>" in first
    assert second.count("<tr><td>r0") == 5 and "<td>r0104.wav</td>" in second
    assert 'rel="next"' in first and f"{files} in all" in first
    assert f"Files 101–{files} of {files} are printed here" in second


def test_the_report_page_says_when_there_is_no_report_yet(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = factories.BatchFactory(
        organisation=organisation, created_by=member, status=Batch.Status.ANALYSING, total_count=3
    )
    body = member_client.get(f"/batches/{batch.pk}/report/").content.decode()
    assert "The report is written when the batch finishes." in body and "data-report-files" not in body
