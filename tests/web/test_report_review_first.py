"""The reports people read say why in words and begin with what to review first, highest risk first;
the CSV and JSON keep the codes."""

import csv
import io
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from pypdf import PdfReader

from jobs import storage
from jobs.models import Analysis, Batch, Recording
from jobs.pages.reports import FIRST_PER_PAGE
from jobs.services.reports import write_reports
from ml.calibration import UNLIKE_TRAINING
from tests import factories
from tests.web import builders

pytestmark = pytest.mark.django_db

NEAR = "p(abnormal) 0.45 is within 0.10 of the threshold 0.50"
UNLIKE = f"{UNLIKE_TRAINING} (distance 7.4, limit 3.1)"
# Highest risk first: the site's probability where the site decided, else the model's p(abnormal).
FIRST = ["site-decided.wav", "sure.wav", "unlike.wav", "likely.wav", "close.wav"]


def _batch(organisation: Any, member: Any) -> Batch:
    return factories.BatchFactory(
        organisation=organisation,
        created_by=member,
        name="Ward rounds",
        model_version=builders.screening_model(),
        status=Batch.Status.COMPLETED_WITH_ERRORS,
        finished_at=timezone.now(),
    )


def _predicted(batch: Batch, path: str, abnormal: float, **fields: Any) -> Recording:
    recording = factories.RecordingFactory(batch=batch, path=path, duration_s=20.0)
    Analysis.objects.create(batch=batch, recording=recording, status=Analysis.Status.DONE)
    factories.PredictionFactory(recording=recording, raw_probability=abnormal, **fields)
    return recording


def _ward(organisation: Any, member: Any) -> Batch:
    """Five recordings to review first in a known order, and three that are not."""
    batch = _batch(organisation, member)
    calibration = factories.SiteCalibrationFactory(
        site__organisation=organisation, model_version=batch.model_version, threshold=0.6
    )
    _predicted(batch, "likely.wav", 0.6)
    _predicted(batch, "sure.wav", 0.95)
    _predicted(batch, "close.wav", 0.45, decision="uncertain", decision_reasons=[NEAR])
    _predicted(batch, "unlike.wav", 0.7, decision="uncertain", decision_reasons=[UNLIKE])
    _predicted(batch, "site-decided.wav", 0.55, site_calibration=calibration, site_probability=0.99)
    _predicted(batch, "clear.wav", 0.1)
    _predicted(
        batch,
        "noise.wav",
        0.9,
        quality="unusable",
        quality_reasons=["silence in 80% of the recording"],
        decision="uncertain",
        decision_reasons=["re-record: silence in 80% of the recording"],
    )
    builders.rejected_recording(batch, "notes.txt", "The file is not a recognised audio format.")
    Batch.objects.filter(pk=batch.pk).update(total_count=8, rejected_count=1)
    return batch


def _stored(batch: Batch) -> dict[str, bytes]:
    write_reports(batch.pk)
    return {report.format: storage.read_bytes(report.storage_key) for report in batch.reports.all()}


def _review_first_paths(html: str) -> list[str]:
    table = html.split('id="review-first-heading"')[1].split("<tbody>")[1].split("</tbody>")[0]
    return [row.split("</td>")[0].removeprefix("<tr><td>") for row in table.split("\n") if row]


def test_it_lists_the_abnormal_and_uncertain_recordings_first_highest_risk_first(
    organisation: Any, member: Any
) -> None:
    batch = _ward(organisation, member)

    stored = _stored(batch)

    html = stored["html"].decode()
    assert 'data-review-first="5">5 recordings given abnormal or found uncertain' in html
    assert _review_first_paths(html) == FIRST
    assert html.index('id="review-first-heading"') < html.index("<h2>Every file</h2>")
    listed = json.loads(stored["json"])["review_first_recordings"]
    assert [entry["path"] for entry in listed] == FIRST
    assert [entry["risk"] for entry in listed] == pytest.approx([0.99, 0.95, 0.7, 0.6, 0.45])
    assert listed[2] == {
        "path": "unlike.wav",
        "patient_id": "",
        "location": "",
        "decision": "uncertain",
        "risk": 0.7,
        "reasons": [UNLIKE],
    }
    text = " ".join(
        " ".join(page.extract_text() for page in PdfReader(io.BytesIO(stored["pdf"])).pages).split()
    )
    first, every = text.split("Review first", 1)[1].split("Every file", 1)
    assert "5 recordings given abnormal or found uncertain" in first
    assert [first.index(path) for path in FIRST] == sorted(first.index(path) for path in FIRST)
    assert "clear.wav" not in first and "noise.wav" not in first and "clear.wav" in every


def test_it_says_why_in_words_in_the_html_and_pdf_and_keeps_the_codes_in_csv_and_json(
    organisation: Any, member: Any
) -> None:
    batch = _ward(organisation, member)

    stored = _stored(batch)

    html = stored["html"].decode()
    pdf = " ".join(
        " ".join(page.extract_text() for page in PdfReader(io.BytesIO(stored["pdf"])).pages).split()
    )
    for said in (html, pdf):
        assert "not_audio" not in said and "distance 7.4" not in said
        assert "unlike the recordings the model was trained on" in said
        assert "too close to the threshold to call: p(abnormal) 0.45 is within 0.10 of 0.50" in said
    assert '<td class="">not a recognised audio file</td><td class="n">1</td>' in html
    assert '<td class="">rejected at upload</td><td class="n">1</td>' in html
    assert '<span class="rejected">rejected at upload</span>' in html
    assert "not a recognised audio file 1" in pdf and "analysed 7" in pdf
    rows = {row["path"]: row for row in csv.DictReader(io.StringIO(stored["csv"].decode()))}
    assert rows["unlike.wav"]["decision_reasons"] == UNLIKE and rows["close.wav"]["decision_reasons"] == NEAR
    assert rows["notes.txt"]["status"] == "rejected"
    summary = json.loads(stored["json"])
    assert summary["counts"]["by_error"] == {"not_audio": 1}
    assert summary["counts"]["by_status"] == {"done": 7, "rejected": 1}
    assert {"path": "unlike.wav", "patient_id": "", "location": "", "reasons": [UNLIKE]} in summary[
        "uncertain_recordings"
    ]


def test_the_report_page_lists_what_to_review_first_a_page_at_a_time(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = _ward(organisation, member)
    for number in range(FIRST_PER_PAGE):
        _predicted(batch, f"more/{number:03}.wav", 0.8)
    write_reports(batch.pk)
    url = f"/batches/{batch.pk}/report/"

    first = member_client.get(url).content.decode()
    second = member_client.get(f"{url}?first=2").content.decode()

    assert _review_first_paths(first)[:2] == ["site-decided.wav", "sure.wav"]
    assert len(_review_first_paths(first)) == FIRST_PER_PAGE
    assert _review_first_paths(second) == [
        "more/048.wav",
        "more/049.wav",
        "unlike.wav",
        "likely.wav",
        "close.wav",
    ]
    assert f"1–{FIRST_PER_PAGE} of {FIRST_PER_PAGE + 5}" in first and 'href="?first=2"' in first
    assert "unlike the recordings the model was trained on" in second and "distance 7.4" not in second
    # The table of every file keeps its own page while the list turns its pages.
    assert "<td>clear.wav</td>" in member_client.get(f"{url}?first=2&page=1").content.decode()
