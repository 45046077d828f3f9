"""What a clinician is told: no diagnosis for unusable recordings, decisions shown as they were
made (probability, the threshold used, outcome), and heart rates flagged when implausible."""

import csv
import io
import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from jobs import storage
from jobs.models import Batch, Prediction, Report
from jobs.services import verdicts, webhooks
from jobs.services.reports import write_reports
from ml.calibration import Calibration
from tests import factories
from tests.web.builders import screening_model

pytestmark = pytest.mark.django_db

NOISE_REASONS = ["clipping on 38.0% of samples", "noisy: no clear heartbeat rhythm (periodicity 0.04)"]
# The bundle's calibrated threshold, unlike its decision_threshold: the pages must show this one.
MANIFEST = {
    "positive_class": "abnormal",
    "decision_threshold": 0.5,
    "calibration": Calibration(threshold=0.39).to_dict(),
}
BEATS = [0.2 + 0.8 * beat for beat in range(12)]  # S1 every 0.8 s: 75 bpm


def batch_of(organisation: Any, member: Any) -> Batch:
    return factories.BatchFactory(
        organisation=organisation,
        created_by=member,
        model_version=screening_model(manifest=MANIFEST),
        status=Batch.Status.COMPLETED,
        name="Ward round",
    )


def predicted(batch: Batch, path: str, *, abnormal: float, **fields: Any) -> Prediction:
    recording = factories.RecordingFactory(
        batch=batch, path=path, duration_s=20.0, label=fields.pop("truth", "")
    )
    recording.analyses.create(batch=batch, status="done")
    return factories.PredictionFactory(
        recording=recording,
        raw_probability=abnormal,
        label="abnormal" if abnormal >= 0.39 else "normal",
        **fields,
    )


def white_noise(batch: Batch) -> Prediction:
    """What the model made of white noise: 'abnormal 79 %, 67 bpm', on an unusable recording."""
    return predicted(
        batch,
        "noise.wav",
        abnormal=0.79,
        decision="uncertain",
        decision_reasons=["re-record: " + "; ".join(NOISE_REASONS)],
        quality="unusable",
        quality_reasons=NOISE_REASONS,
        heart_rate_bpm=67.0,
        truth="abnormal",
    )


def api_client(member: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(member)
    return client


def reports_of(batch: Batch) -> tuple[list[dict[str, str]], dict[str, Any], str]:
    write_reports(batch.pk)
    stored = {
        report.format: storage.read_bytes(report.storage_key) for report in Report.objects.filter(batch=batch)
    }
    rows = list(csv.DictReader(io.StringIO(stored["csv"].decode())))
    return rows, json.loads(stored["json"]), stored["html"].decode()


# --- unusable recordings: re-record, no diagnosis -------------------------------------------


def test_it_tells_to_re_record_an_unusable_recording_on_its_page(
    member_client: Client, organisation: Any, member: Any
) -> None:
    noise = white_noise(batch_of(organisation, member))

    body = member_client.get(f"/recordings/{noise.recording_id}/").content.decode()

    result = body.split('id="result-heading"')[1].split("</section>")[0]
    assert "data-decision>re-record</span>" in result
    assert "data-predicted-label" not in result and "abnormal</span>" not in result.split("<details")[0]
    notice = result.split("data-re-record>")[1].split("</div>")[0]
    assert all(reason in notice for reason in NOISE_REASONS)
    assert "not shown: the recording is unusable" in result and "67 bpm" not in body
    # The model's probabilities stay, folded away as what the model read.
    assert 'data-probability="abnormal">79 %' in result.split("<details data-model-output>")[1]
    assert "differs from the prediction" not in result and "matches" not in result


def test_it_gives_an_unusable_recording_no_diagnosis_in_the_batch_table(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = batch_of(organisation, member)
    white_noise(batch)
    predicted(batch, "zz-heard.wav", abnormal=0.7)

    body = member_client.get(f"/batches/{batch.pk}/").content.decode()
    noise_row, heard_row = body.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]

    assert 'class="badge re-record"' in noise_row and NOISE_REASONS[0] in noise_row
    assert "badge abnormal" not in noise_row and "79 %" not in noise_row and "67 bpm" not in noise_row
    assert 'class="badge abnormal"' in heard_row
    filtered = member_client.get(f"/batches/{batch.pk}/", {"label": "abnormal"}).content.decode()
    assert "noise.wav" not in filtered.split("<tbody>")[1] and "zz-heard.wav" in filtered


def test_it_gives_an_unusable_recording_no_diagnosis_in_the_reports(organisation: Any, member: Any) -> None:
    batch = batch_of(organisation, member)
    white_noise(batch)
    predicted(batch, "heard.wav", abnormal=0.7, truth="abnormal", heart_rate_bpm=70.0)

    rows, summary, page = reports_of(batch)

    noise = next(row for row in rows if row["path"] == "noise.wav")
    assert (noise["label"], noise["decision"], noise["confidence"], noise["heart_rate_bpm"]) == (
        "",
        "re-record",
        "",
        "",
    )
    assert (noise["p_abnormal"], noise["p_normal"]) == ("0.7900", "0.2100")  # the model's output stays
    assert noise["decision_reasons"] == "; ".join(NOISE_REASONS) and noise["model_version"]
    assert summary["counts"]["by_class"] == {"abnormal": 1}
    assert summary["counts"]["by_decision"] == {"re-record": 1, "abnormal": 1}
    assert summary["metrics"]["labelled"] == 1  # a recording without a result is not graded
    assert summary["re_record_recordings"] == [
        {"path": "noise.wav", "patient_id": "", "location": "", "reasons": NOISE_REASONS}
    ]
    assert summary["uncertain_recordings"] == []
    cells = page.split("<td>noise.wav</td>")[1].split("</tr>")[0].removeprefix("<td>").split("</td><td>")
    patient, location, status, result, decision, quality, heart_rate, truth = cells[:8]
    assert (result, quality, heart_rate, truth) == ("", "unusable", "", "abnormal")
    assert decision.startswith("re-record") and NOISE_REASONS[0] in decision and "0.79" not in decision


def test_it_gives_an_unusable_recording_no_diagnosis_in_the_api(organisation: Any, member: Any) -> None:
    batch = batch_of(organisation, member)
    noise = white_noise(batch)
    api = api_client(member)

    row = api.get(f"/api/v1/batches/{batch.pk}/recordings/").json()["results"][0]
    detail = api.get(f"/api/v1/recordings/{noise.recording_id}/").json()["predictions"][0]

    for shown in (row, detail):
        assert (shown["label"], shown["decision"], shown["confidence"], shown["heart_rate_bpm"]) == (
            None,
            "re-record",
            None,
            None,
        )
        assert shown["decision_reasons"] == NOISE_REASONS
        assert shown["decision_text"] == "re-record: " + "; ".join(NOISE_REASONS)
        assert shown["probabilities"]["abnormal"] == pytest.approx(0.79)
    assert detail["model_label"] == "abnormal" and detail["raw_probability"] == pytest.approx(0.79)
    assert api.get(f"/api/v1/batches/{batch.pk}/recordings/", {"label": "abnormal"}).json()["count"] == 0


def test_it_counts_the_batchs_decisions_in_its_api_detail_as_its_webhook_does(
    organisation: Any, member: Any, django_assert_max_num_queries: Any
) -> None:
    batch = batch_of(organisation, member)
    white_noise(batch)  # stored as uncertain: unusable says re-record
    predicted(batch, "heard.wav", abnormal=0.7)
    predicted(batch, "quiet.wav", abnormal=0.1)
    predicted(batch, "unsure.wav", abnormal=0.45, decision="uncertain")
    before_decisions = predicted(batch, "old.wav", abnormal=0.2, decision="")
    # Another version's reading of a recording of the batch is not the batch's.
    factories.PredictionFactory(
        recording=before_decisions.recording, model_version=screening_model(), decision="abnormal"
    )
    api = api_client(member)

    detail = api.get(f"/api/v1/batches/{batch.pk}/").json()
    listed = api.get("/api/v1/batches/").json()["results"]

    expected = {"abnormal": 1, "normal": 2, "uncertain": 1, "re-record": 1}
    assert detail["decision_counts"] == expected
    assert webhooks.summary(batch)["counts"]["by_decision"] == expected
    assert webhooks.summary(batch)["counts"]["by_label"] == {"abnormal": 2, "normal": 2}
    assert [row["id"] for row in listed] == [str(batch.pk)] and "decision_counts" not in listed[0]
    with django_assert_max_num_queries(1):
        counted = verdicts.batch_counts(batch)
    assert counted.by_decision == expected


# --- decisions as they were made -------------------------------------------------------------


def test_it_shows_the_probability_against_the_threshold_that_made_the_decision(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = batch_of(organisation, member)
    called = predicted(batch, "called.wav", abnormal=0.42)
    unsure = predicted(
        batch,
        "unsure.wav",
        abnormal=0.45,
        decision="uncertain",
        decision_reasons=["p(abnormal) 0.45 is within 0.10 of the threshold 0.39"],
    )

    body = member_client.get(f"/recordings/{called.recording_id}/").content.decode()
    table = member_client.get(f"/batches/{batch.pk}/").content.decode()
    row = api_client(member).get(f"/api/v1/batches/{batch.pk}/recordings/").json()["results"][0]
    rows, _, page = reports_of(batch)

    assert "data-verdict-text>p(abnormal) 0.42, threshold 0.39 → <strong>abnormal</strong></p>" in body
    assert "confidence 42 %" not in body
    assert "data-rule>p(abnormal) 0.42, threshold 0.39</span>" in table
    assert row["decision_text"] == "p(abnormal) 0.42, threshold 0.39 → abnormal"
    assert row["threshold"] == pytest.approx(0.39)
    assert rows[0]["threshold"] == "0.3900"
    assert '<span class="reasons">p(abnormal) 0.42, threshold 0.39</span>' in page
    unsure_page = member_client.get(f"/recordings/{unsure.recording_id}/").content.decode()
    assert "p(abnormal) 0.45, threshold 0.39 → <strong>uncertain</strong>:" in unsure_page
    assert verdicts.for_prediction(unsure).text == (
        "p(abnormal) 0.45, threshold 0.39 → uncertain: p(abnormal) 0.45 is within 0.10 of the threshold 0.39"
    )


def test_it_shows_the_site_calibrations_threshold_when_the_site_decided(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = batch_of(organisation, member)
    profile = factories.SiteCalibrationFactory(
        site__organisation=organisation,
        site__name="Ward 3",
        model_version=batch.model_version,
        threshold=0.31,
    )
    decided = predicted(batch, "site.wav", abnormal=0.2, site_calibration=profile, site_probability=0.34)
    Prediction.objects.filter(pk=decided.pk).update(decision="abnormal")

    body = member_client.get(f"/recordings/{decided.recording_id}/").content.decode()
    row = api_client(member).get(f"/api/v1/batches/{batch.pk}/recordings/").json()["results"][0]

    expected = f"p(abnormal) 0.34, threshold 0.31 (site Ward 3 v{profile.version})"
    assert f"data-verdict-text>{expected} → <strong>abnormal</strong>" in body
    assert row["decision_text"] == f"{expected} → abnormal"
    assert row["threshold"] == pytest.approx(0.31)


# --- heart-rate plausibility -------------------------------------------------------------------


def test_it_accepts_a_heart_rate_that_matches_the_segmented_beats() -> None:
    assert verdicts.heart_rate_check(75.0, BEATS) == verdicts.HeartRate(75.0)
    assert verdicts.heart_rate_check(75.0, None) == verdicts.HeartRate(75.0)
    assert verdicts.heart_rate_check(None, BEATS) == verdicts.HeartRate(None)


@pytest.mark.parametrize("bpm", [24.0, 29.9, 220.5, 260.0])
def test_it_flags_a_heart_rate_outside_30_to_220_bpm(bpm: float) -> None:
    found = verdicts.heart_rate_check(bpm)

    assert found.flag == "out_of_range" and "30-220 bpm" in found.note


@pytest.mark.parametrize(("bpm", "flag"), [(150.0, "doubled"), (142.0, "doubled"), (37.5, "halved")])
def test_it_flags_a_heart_rate_twice_or_half_the_segmented_beats(bpm: float, flag: str) -> None:
    found = verdicts.heart_rate_check(bpm, BEATS)

    assert found.flag == flag and "75 bpm of the segmented beats" in found.note


def test_it_flags_beat_intervals_that_alternate_short_and_long_as_doubled() -> None:
    # Each S2 taken for the next beat's S1: intervals 0.3 s, 0.5 s, 0.3 s, ... (true rate 75 bpm).
    onsets = [0.1]
    for index in range(12):
        onsets.append(onsets[-1] + (0.3 if index % 2 == 0 else 0.5))

    found = verdicts.heart_rate_check(150.0, onsets)

    assert found.flag == "doubled" and "about 75 bpm" in found.note
    steady = [0.1 + 0.4 * beat for beat in range(12)]
    assert verdicts.heart_rate_check(150.0, steady).flag == ""


def test_it_shows_the_heart_rate_flag_on_the_pages_and_in_the_api(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = batch_of(organisation, member)
    segments = {"s1_s": BEATS, "s2_s": [], "segments": [], "cycles": 11, "heart_rate_bpm": 75.0}
    doubled = predicted(batch, "doubled.wav", abnormal=0.2, heart_rate_bpm=150.0, segments=segments)

    body = member_client.get(f"/recordings/{doubled.recording_id}/").content.decode()
    table = member_client.get(f"/batches/{batch.pk}/").content.decode()
    api = api_client(member)
    row = api.get(f"/api/v1/batches/{batch.pk}/recordings/").json()["results"][0]
    detail = api.get(f"/api/v1/recordings/{doubled.recording_id}/").json()["predictions"][0]
    rows, _, _ = reports_of(batch)

    heart = body.split("data-heart-rate>")[1].split("</dd>")[0]
    assert "150 bpm" in heart and 'data-heart-rate-flag="doubled"' in heart
    assert "about twice the 75 bpm of the segmented beats" in heart
    assert 'data-heart-rate-flag="doubled"' in table
    for shown in (row, detail):
        assert shown["heart_rate_flag"] == "doubled" and "twice" in shown["heart_rate_note"]
    assert rows[0]["heart_rate_flag"] == "doubled"
