"""Patients in the reports: each file's patient and location in the CSV, JSON and HTML (and PDF),
and one verdict per patient in the JSON and HTML, as the patients page gives it."""

import csv
import io
import json
from typing import Any

import pytest
from django.test import Client
from pypdf import PdfReader

from jobs import storage
from jobs.models import Batch
from jobs.services import patients, reviews
from jobs.services.reports import csv_columns, patient_cells, write_reports
from tests.conftest import SAMPLES
from tests.web import builders

pytestmark = pytest.mark.django_db

# The columns before patients came, in their order: scripts read them by position too.
EARLIER_COLUMNS = [
    "path", "status", "label", "decision", "confidence", "p_normal", "p_abnormal",
    "quality", "heart_rate_bpm", "duration_s", "model_version", "error",
    "site", "site_calibration", "site_probability", "threshold", "decision_reasons", "heart_rate_flag",
    "reviewed_label", "review_action", "reviewed_by", "reviewed_at", "review_note",
]  # fmt: skip
# Files (abnormal 0.82, 0.18, 0.64, 0.35 in builders.finished_batch) and whose they are.
PATIENTS = {
    "clinic/a0033.wav": ("50782", "AV"),
    "clinic/a0035.wav": ("50782", "MV"),
    "clinic/a0082.wav": ("50783", "TV"),
}


def _clinic(organisation: Any, member: Any) -> Batch:
    batch = builders.finished_batch(organisation, member, files=sorted(SAMPLES.glob("*.wav"))[:4])
    for path, (patient, location) in PATIENTS.items():
        batch.recordings.filter(path=path).update(patient_id=patient, location=location)
    confirmed = batch.recordings.get(path="clinic/a0035.wav")
    reviews.review_recording(member, confirmed, batch=batch, label="normal", note="")
    write_reports(batch.pk)
    return batch


def _stored(batch: Batch) -> dict[str, bytes]:
    return {report.format: storage.read_bytes(report.storage_key) for report in batch.reports.all()}


def test_it_adds_patient_and_location_to_the_csv_after_every_earlier_column(
    organisation: Any, member: Any
) -> None:
    batch = _clinic(organisation, member)

    text = _stored(batch)["csv"].decode()

    header = next(csv.reader(io.StringIO(text)))
    assert header == csv_columns(["normal", "abnormal"]) == [*EARLIER_COLUMNS, "patient_id", "location"]
    rows = {row["path"]: row for row in csv.DictReader(io.StringIO(text))}
    for path, (patient, location) in PATIENTS.items():
        assert (rows[path]["patient_id"], rows[path]["location"]) == (patient, location)
    assert (rows["clinic/a0071.wav"]["patient_id"], rows["clinic/a0071.wav"]["location"]) == ("", "")
    assert rows["clinic/a0033.wav"]["p_abnormal"] == "0.8200"  # the earlier columns keep their cells


def test_it_gives_each_patients_verdict_in_the_json_as_the_patients_page_does(
    organisation: Any, member: Any
) -> None:
    batch = _clinic(organisation, member)

    report = json.loads(_stored(batch)["json"])

    assert report["patient_verdicts"] == [
        patient_cells(patient) for patient in patients.patient_verdicts(batch)
    ]
    first, second = report["patient_verdicts"]
    assert (first["patient_id"], first["verdict"], first["reason"]) == ("50782", "abnormal", "abnormal at AV")
    assert [(r["location"], r["outcome"], r["reviewed"]) for r in first["recordings"]] == [
        ("AV", "abnormal", False),
        ("MV", "normal", True),
    ]
    assert (second["patient_id"], second["verdict"]) == ("50783", "normal")
    counted = {"count": 2, "by_verdict": {"abnormal": 1, "normal": 1}}
    assert report["patients"] == batch.reports.get(format="json").summary["patients"] == counted
    listed = {entry["path"]: entry for entry in report["review_first_recordings"]}
    assert (listed["clinic/a0033.wav"]["patient_id"], listed["clinic/a0033.wav"]["location"]) == (
        "50782",
        "AV",
    )
    assert (listed["clinic/a0071.wav"]["patient_id"], listed["clinic/a0071.wav"]["location"]) == ("", "")
    (reviewed,) = report["reviewed_recordings"]
    assert (reviewed["path"], reviewed["patient_id"], reviewed["location"]) == (
        "clinic/a0035.wav",
        "50782",
        "MV",
    )


def test_it_shows_patients_and_locations_in_the_html_and_pdf_reports(organisation: Any, member: Any) -> None:
    batch = _clinic(organisation, member)

    stored = _stored(batch)

    html = stored["html"].decode()
    assert "<tr><td>clinic/a0033.wav</td><td>50782</td><td>AV</td>" in html
    assert "<tr><td>clinic/a0071.wav</td><td></td><td></td>" in html
    assert 'data-patients="2">2 patients named by the recordings' in html
    assert (
        '<tr><td>50782</td><td><span class="abnormal">abnormal</span></td><td>abnormal at AV</td>'
        "<td>AV: abnormal; MV: normal (reviewed)</td></tr>"
    ) in html
    assert '<tr><td>50783</td><td><span class="normal">normal</span></td>' in html
    sections = [html.index(f">{name}</h2>") for name in ("Review first", "Patients", "Every file")]
    assert sections == sorted(sections)
    pdf = " ".join(
        " ".join(page.extract_text() for page in PdfReader(io.BytesIO(stored["pdf"])).pages).split()
    )
    assert "50782 abnormal abnormal at AV AV: abnormal; MV: normal (reviewed)" in pdf
    assert "clinic/a0033.wav 50782 AV analysed" in pdf


def test_the_report_page_lists_the_patients_and_links_their_page(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = _clinic(organisation, member)

    body = member_client.get(f"/batches/{batch.pk}/report/").content.decode()

    assert "<tr><td>50782</td>" in body and "<tr><td>50783</td>" in body
    assert f'href="/batches/{batch.pk}/patients/"' in body
    assert "<tr><td>clinic/a0035.wav</td><td>50782</td><td>MV</td>" in body
