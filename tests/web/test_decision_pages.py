"""Decisions, heart-cycle segments and their reports on the pages (Django's test client)."""

import json
from typing import Any

import pytest
from django.test import Client

from jobs import storage
from jobs.models import Batch, Prediction, Report
from jobs.services import plots
from jobs.services.reports import write_reports
from tests.conftest import SAMPLES
from tests.web import builders

pytestmark = pytest.mark.django_db

REASON = "poor quality: duration 1.2 s is under 5 s: too few beats for a reliable verdict"
SEGMENTS = {
    "s1_s": [0.21, 1.05, 1.88, 2.74],
    "s2_s": [0.52, 1.36, 2.2],
    "segments": [["S1", 0.21, 0.33], ["systole", 0.33, 0.52], ["S2", 0.52, 0.62], ["diastole", 0.62, 1.05]],
    "cycles": 3,
    "heart_rate_bpm": 71.8,
    "heart_rate_sd_bpm": 3.4,
}


def decided_batch(organisation: Any, member: Any) -> tuple[Batch, list[Prediction]]:
    """Three recordings: uncertain with segments, decided as labelled, and one from before decisions."""
    batch = builders.finished_batch(organisation, member, files=sorted(SAMPLES.glob("*.wav"))[:3])
    uncertain, decided, legacy = Prediction.objects.filter(batch=batch).order_by("recording__path")
    Prediction.objects.filter(pk=uncertain.pk).update(
        decision="uncertain", decision_reasons=[REASON], segments=SEGMENTS, raw_probability=0.8
    )
    Prediction.objects.filter(pk=decided.pk).update(decision=decided.label, segments=SEGMENTS)
    return batch, [Prediction.objects.get(pk=p.pk) for p in (uncertain, decided, legacy)]


def test_it_shows_an_uncertain_decision_with_its_reasons_and_the_heart_rate_spread(
    member_client: Client, organisation: Any, member: Any
) -> None:
    _, (uncertain, decided, _) = decided_batch(organisation, member)

    body = member_client.get(f"/recordings/{uncertain.recording_id}/").content.decode()

    assert "data-decision>uncertain</span>" in body
    assert "data-decision-reasons" in body and REASON in body
    assert "72 bpm" in body and "± 3.4 bpm beat to beat over 3 cycles" in body
    body = member_client.get(f"/recordings/{decided.recording_id}/").content.decode()
    assert "data-decision-reasons" not in body and "data-decision>" not in body
    assert (
        f'<dt>Decision</dt>\n          <dd><span class="badge {decided.label}">{decided.label}</span>' in body
    )


def test_it_shows_a_prediction_made_before_decisions_as_before(
    member_client: Client, organisation: Any, member: Any
) -> None:
    _, (_, _, legacy) = decided_batch(organisation, member)

    response = member_client.get(f"/recordings/{legacy.recording_id}/")

    body = response.content.decode()
    assert response.status_code == 200
    assert f"data-predicted-label>{legacy.label}</span>" in body
    assert "data-decision" not in body and "data-heart-rate-variability" not in body
    assert "<dt>Decision</dt>" not in body


def test_it_shows_decisions_and_counts_uncertain_on_the_batch_page(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch, (uncertain, decided, _) = decided_batch(organisation, member)
    write_reports(batch.pk)

    body = member_client.get(f"/batches/{batch.pk}/").content.decode()

    rows = body.split("<tbody>")[1]
    cells = [row.split(" data-decision>")[1].split("</td>")[0] for row in rows.split("<tr>")[1:]]
    assert 'badge uncertain"' in cells[0] and REASON in cells[0]
    assert f">{decided.label}</span>" in cells[1]
    assert cells[2] == "–"
    assert 'data-uncertain-count="1"' in body
    assert 'data-decision-count="uncertain">uncertain 1</span>' in body
    assert "data-shift-warning" not in body


def test_it_puts_decisions_and_reasons_in_the_json_and_html_reports(organisation: Any, member: Any) -> None:
    batch, (uncertain, decided, _) = decided_batch(organisation, member)

    write_reports(batch.pk)

    report = json.loads(storage.read_bytes(Report.objects.get(batch=batch, format="json").storage_key))
    assert report["counts"]["by_decision"] == {"uncertain": 1, decided.label: 1}
    assert report["uncertain_recordings"] == [
        {"path": uncertain.recording.path, "patient_id": "", "location": "", "reasons": [REASON]}
    ]
    assert report["re_record_recordings"] == []
    assert report["shift_warning"] is None
    assert "uncertain_recordings" not in Report.objects.get(batch=batch, format="json").summary
    page = storage.read_bytes(Report.objects.get(batch=batch, format="html").storage_key).decode()
    assert "<th>decision</th>" in page
    rule = '<span class="reasons">p(abnormal) 0.82, threshold 0.50</span>'
    assert f'<td>uncertain<br>{rule}<br><span class="reasons">{REASON}</span></td>' in page


def test_it_shows_the_shift_warning_on_the_batch_page(member_client: Client, organisation: Any) -> None:
    from tests import factories

    warning = "96% of this batch was called abnormal and its scores are unlike validation (KS distance 0.92)"
    batch = factories.BatchFactory(
        organisation=organisation, status=Batch.Status.COMPLETED, shift_warning=warning
    )

    body = member_client.get(f"/batches/{batch.pk}/").content.decode()

    block = body.split("data-shift-warning>")[1].split("</div>")[0]
    assert warning in block


def test_it_draws_s1_and_s2_markers_on_the_waveform(organisation: Any, member: Any) -> None:
    from matplotlib import pyplot

    from ml.audio import decode_audio

    _, (uncertain, _, legacy) = decided_batch(organisation, member)
    audio = decode_audio(SAMPLES / "a0033.wav")

    figure = plots.overview_figure(audio, uncertain, uncertain.model_version)

    wave_axis = figure.axes[0]
    legend = [text.get_text() for text in wave_axis.get_legend().get_texts()]
    assert legend == ["S1 (first heart sound)", "S2 (second heart sound)"]
    markers = {collection.get_label(): collection for collection in wave_axis.collections[1:]}
    s1, s2 = markers["S1 (first heart sound)"], markers["S2 (second heart sound)"]
    assert [segment[0][0] for segment in s1.get_segments()] == pytest.approx(SEGMENTS["s1_s"])
    assert [segment[0][0] for segment in s2.get_segments()] == pytest.approx(SEGMENTS["s2_s"])
    assert s1.get_linestyle() != s2.get_linestyle()
    before = plots.overview_figure(audio, legacy, legacy.model_version)
    assert before.axes[0].get_legend() is None and len(before.axes[0].collections) == 1
    pyplot.close(figure)
    pyplot.close(before)
