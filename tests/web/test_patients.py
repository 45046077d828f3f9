"""Patients: patient and auscultation location from labels.csv or CirCor-style file names,
kept by ingest, and the batch's per-patient page with one verdict per patient."""

import io
import zipfile
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from jobs import storage
from jobs.models import Batch, Recording, Review
from jobs.services import archive, ingest, patients, queue
from jobs.services.patients import Reading
from tests import factories
from tests.conftest import SAMPLES
from tests.web.builders import screening_model

SAMPLE = sorted(SAMPLES.glob("*.wav"))[0].read_bytes()


# --- labels.csv and file names ------------------------------------------------------


def test_it_reads_patient_and_location_columns_with_or_without_a_label() -> None:
    data = b"path,label,Patient_ID,location\na.wav,Normal,p-1,mv\nb.wav,,p-1,Phc\nc.wav,abnormal,,\n"
    assert archive.parse_manifest(data) == {
        "a.wav": archive.MemberFacts(label="normal", patient_id="p-1", location="MV"),
        "b.wav": archive.MemberFacts(label="", patient_id="p-1", location="Phc"),
        "c.wav": archive.MemberFacts(label="abnormal"),
    }
    # Ground truth only for the labelled rows.
    assert archive.parse_labels(data) == {"a.wav": "normal", "c.wav": "abnormal"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"path,label,patiant\na.wav,normal,7\n", "unknown or repeated column 'patiant'"),
        (b"path,label,patient,subject\na.wav,normal,7,8\n", "unknown or repeated column 'subject'"),
        (b"path,label,patient\na.wav,normal\n", "line 2: expected 'path,label,patient'"),
        (b"path,label\na.wav,\n", "line 2: expected 'path,label'"),
    ],
)
def test_it_refuses_unknown_columns_and_short_rows(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        archive.parse_manifest(data)


@pytest.mark.parametrize(
    ("path", "facts"),
    [
        ("50782_MV_1.wav", ("50782", "MV")),
        ("clinic/13918_av.wav", ("13918", "AV")),
        ("P012_phc.flac", ("P012", "Phc")),
        ("a0001.wav", ("", "")),
        ("left_AV.wav", ("", "")),
        ("50782_XY.wav", ("", "")),
    ],
)
def test_it_reads_patient_and_location_from_circor_names(path: str, facts: tuple[str, str]) -> None:
    assert patients.facts_from_name(path) == facts


def test_labels_csv_wins_over_the_file_name() -> None:
    listed = archive.MemberFacts(label="normal", patient_id="from-csv")
    assert patients.member_facts("50782_MV.wav", listed) == archive.MemberFacts("normal", "from-csv", "MV")
    assert patients.member_facts("50782_MV.wav", None) == archive.MemberFacts("", "50782", "MV")


# --- one verdict per patient -----------------------------------------------------


def readings(*outcomes: str) -> list[Reading]:
    places = ["AV", "PV", "TV", "MV"]
    return [Reading(i, f"{i}.wav", places[i], outcome, False) for i, outcome in enumerate(outcomes)]


@pytest.mark.parametrize(
    ("outcomes", "verdict", "reason"),
    [
        (("normal", "abnormal", "pending"), "abnormal", "abnormal at PV"),
        (("normal", "pending"), "pending", "1 of 2 recordings not analysed yet"),
        (("normal", "uncertain", "normal"), "uncertain", "uncertain at PV: review or re-record"),
        (("re-record", "re-record"), "re-record", "no usable recording: re-record"),
        (("normal", "re-record", "normal"), "normal", "normal at every usable location; re-record PV"),
    ],
)
def test_it_gives_a_screening_patient_one_verdict(
    outcomes: tuple[str, ...], verdict: str, reason: str
) -> None:
    assert patients.decide(readings(*outcomes), positive="abnormal") == (verdict, reason)


def test_it_calls_disagreeing_classes_uncertain_without_a_positive_class() -> None:
    assert patients.decide(readings("present", "absent"), positive=None) == (
        "uncertain",
        "the recordings disagree (absent at PV; present at AV)",
    )
    assert patients.decide(readings("absent", "absent"), positive=None)[0] == "absent"


# --- ingest and pages --------------------------------------------------------------


def ward_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name in ("ward/50782_AV.wav", "ward/50782_MV_1.wav", "ward/13918_TV.wav", "ward/a0001.wav"):
            zipped.writestr(name, SAMPLE)
        zipped.writestr(
            "ward/labels.csv", "path,label,patient\n13918_TV.wav,abnormal,\na0001.wav,normal,p-77\n"
        )
    return buffer.getvalue()


@pytest.mark.django_db
def test_it_keeps_the_patient_and_location_of_each_member(
    organisation: Any, member: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue, "send_analysis", lambda batch, ids, *, chunk_size: 1)
    batch = factories.BatchFactory(
        organisation=organisation, created_by=member, model_version=screening_model(), upload_name="ward.zip"
    )
    key = storage.upload_key(batch.pk, "ward.zip")
    storage.put_bytes(key, ward_archive())
    Batch.objects.filter(pk=batch.pk).update(upload_key=key)

    ingest.ingest_batch(batch.pk, queue_analysis=False)

    rows = Recording.objects.filter(batch=batch).order_by("path")  # the archive's one folder dropped
    assert [(row.path, row.label, row.patient_id, row.location) for row in rows] == [
        ("13918_TV.wav", "abnormal", "13918", "TV"),
        ("50782_AV.wav", "", "50782", "AV"),
        ("50782_MV_1.wav", "", "50782", "MV"),
        ("a0001.wav", "normal", "p-77", ""),
    ]


def predicted(batch: Batch, path: str, patient: str, location: str, *, abnormal: float, **fields: Any) -> Any:
    recording = factories.RecordingFactory(batch=batch, path=path, patient_id=patient, location=location)
    recording.analyses.create(batch=batch, status="done")
    factories.PredictionFactory(recording=recording, raw_probability=abnormal, **fields)
    return recording


@pytest.mark.django_db
def test_it_shows_one_verdict_per_patient_with_reviews_counted(
    member_client: Client, member: Any, organisation: Any, outsider: Any, client: Any
) -> None:
    batch = factories.BatchFactory(
        organisation=organisation, created_by=member, model_version=screening_model(), status="completed"
    )
    predicted(batch, "50782_AV.wav", "50782", "AV", abnormal=0.2)
    murmur = predicted(batch, "50782_MV.wav", "50782", "MV", abnormal=0.9)
    predicted(batch, "13918_TV.wav", "13918", "TV", abnormal=0.1)
    predicted(batch, "13918_PV.wav", "13918", "PV", abnormal=0.6, decision="uncertain")
    noisy = predicted(batch, "20001_AV.wav", "20001", "AV", abnormal=0.9, quality="unusable")
    predicted(batch, "no-patient.wav", "", "", abnormal=0.9)
    # A clinician's reading counts instead of the model's: the uncertain one was normal.
    uncertain = batch.recordings.get(path="13918_PV.wav")
    Review.objects.create(
        recording=uncertain,
        model_version=batch.model_version,
        model_decision="uncertain",
        label="normal",
        action=Review.Action.LABELLED,
        reviewed_by=member,
        reviewed_at=timezone.now(),
    )

    found = {verdict.patient_id: verdict for verdict in patients.patient_verdicts(batch)}
    assert {patient: (found[patient].verdict, found[patient].reason) for patient in found} == {
        "13918": ("normal", "normal at every usable location"),
        "20001": ("re-record", "no usable recording: re-record"),
        "50782": ("abnormal", "abnormal at MV"),
    }
    assert found["50782"].locations == ["AV", "MV"]
    assert [reading.reviewed for reading in found["13918"].readings] == [True, False]  # PV, TV

    body = member_client.get(f"/batches/{batch.pk}/").content.decode()
    assert "By patient: 3 patients, one verdict each" in body
    assert "patient 50782 · MV" in body
    page = member_client.get(f"/batches/{batch.pk}/patients/").content.decode()
    assert page.count("<tr data-patient=") == 3
    assert 'data-verdict-count="abnormal">abnormal 1<' in page
    only = member_client.get(f"/batches/{batch.pk}/patients/", {"verdict": "abnormal"}).content.decode()
    assert only.count("<tr data-patient=") == 1 and f"/recordings/{murmur.pk}/" in only
    detail = member_client.get(f"/recordings/{noisy.pk}/").content.decode()
    assert f"/batches/{batch.pk}/patients/?patient=20001" in detail and "data-location>AV<" in detail
    rows = member_client.get(f"/api/v1/batches/{batch.pk}/recordings/").json()["results"]
    assert {row["path"]: (row["patient_id"], row["location"]) for row in rows}["50782_MV.wav"] == (
        "50782",
        "MV",
    )

    client.force_login(outsider)
    assert client.get(f"/batches/{batch.pk}/patients/").status_code == 404


@pytest.mark.django_db
def test_it_filters_the_batch_page_and_the_api_by_patient(
    member_client: Client, member: Any, organisation: Any
) -> None:
    batch = factories.BatchFactory(
        organisation=organisation, created_by=member, model_version=screening_model(), status="completed"
    )
    av = predicted(batch, "50782_AV.wav", "50782", "AV", abnormal=0.2)
    mv = predicted(batch, "50782_MV.wav", "50782", "MV", abnormal=0.9)
    other = predicted(batch, "507821_TV.wav", "507821", "TV", abnormal=0.1)  # another id that contains it
    predicted(batch, "no-patient.wav", "", "", abnormal=0.9)

    body = member_client.get(f"/batches/{batch.pk}/", {"patient": "50782"}).content.decode()

    table = body.split("<tbody>")[1].split("</tbody>")[0]
    assert table.count("<tr>") == 2 and "50782_AV.wav" in table and "50782_MV.wav" in table
    assert 'name="patient" value="50782"' in body and 'for="id_patient">Patient<' in body
    # The recording pages carry the filter: previous and next stay with the patient.
    first = member_client.get(
        f"/recordings/{av.pk}/", {"batch": batch.pk, "patient": "50782"}
    ).content.decode()
    assert f"/recordings/{mv.pk}/?batch={batch.pk}&amp;patient=50782" in first
    assert f"/recordings/{other.pk}/" not in first
    rows = member_client.get(f"/api/v1/batches/{batch.pk}/recordings/", {"patient": " 507821 "}).json()
    assert [row["path"] for row in rows["results"]] == ["507821_TV.wav"]
    nobody = member_client.get(f"/batches/{batch.pk}/", {"patient": "99999"}).content.decode()
    assert "No recordings match these filters." in nobody
    page = member_client.get(f"/batches/{batch.pk}/patients/").content.decode()
    assert f'href="/batches/{batch.pk}/?patient=50782" data-patient-recordings' in page
