"""Decisions, heart-cycle segments and the batch-shift warning, end to end on a real worker."""

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from django.test import Client

from jobs import storage
from jobs.models import Analysis, Batch, ModelVersion, Prediction, Report
from ml.calibration import UNCERTAIN, Calibration, reference_quantiles
from tests.conftest import SAMPLES
from tests.pipeline.conftest import LABELS, sample_archive, upload, wait_for_batch
from tests.polling import poll_until

SHIFT_BATCH = sorted(LABELS)  # the 24 committed samples: enough for the shift check (20)


def cut_wav(path: Path, seconds: float) -> bytes:
    samples, rate = soundfile.read(str(path), dtype="int16")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples[: int(seconds * rate)], rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def wait_for_reports(batch_id: Any) -> Batch:
    poll_until(lambda: Report.objects.filter(batch=batch_id).count() == 4, timeout=90)
    return Batch.objects.get(pk=batch_id)


def set_calibration(version: ModelVersion, calibration: Calibration) -> None:
    """Replace the stored manifest's calibration (what the shift check reads)."""
    manifest = {**version.manifest, "calibration": calibration.to_dict()}
    ModelVersion.objects.filter(pk=version.pk).update(manifest=manifest)


def positive_scores(batch: Batch) -> list[float]:
    positive = batch.model_version.manifest["positive_class"]
    rows = Prediction.objects.filter(batch=batch).values_list("probabilities", flat=True)
    return [row[positive] for row in rows]


def test_it_analyses_a_recording_of_just_over_a_second_as_poor_and_uncertain(
    shared_worker: Any, default_model: Any, api: Any
) -> None:
    assert default_model.manifest["min_duration_s"] <= 1.2  # the shipped bundle analyses from 1 s

    created = upload(api, cut_wav(SAMPLES / "a0033.wav", 1.2), "short.wav")

    batch = wait_for_batch(created["id"])
    analysis = Analysis.objects.get(batch=batch)
    assert (batch.status, analysis.status) == (Batch.Status.COMPLETED, Analysis.Status.DONE), (
        analysis.error_message
    )
    prediction = Prediction.objects.get(recording=analysis.recording)
    assert prediction.quality == "poor"
    assert any("under 5 s" in reason for reason in prediction.quality_reasons)
    assert prediction.decision == UNCERTAIN
    assert any("poor quality" in reason for reason in prediction.decision_reasons)
    assert analysis.recording.duration_s is not None and abs(analysis.recording.duration_s - 1.2) < 0.01


def test_it_stores_decisions_and_segments_and_the_api_returns_them(
    shared_worker: Any, default_model: Any, api: Any
) -> None:
    created = upload(api, sample_archive(["a0033.wav", "e00014.wav"]), "two.zip")

    batch = wait_for_batch(created["id"])
    assert batch.done_count == 2
    positive = default_model.manifest["positive_class"]
    rows = api.get(f"/api/v1/batches/{batch.pk}/recordings/").json()["results"]
    for row in rows:
        stored = Prediction.objects.get(recording_id=row["id"], model_version=default_model)
        assert stored.decision in (*default_model.classes, UNCERTAIN)
        assert bool(stored.decision_reasons) == (stored.decision == UNCERTAIN)
        # The stored probability is the raw score through the bundle's own calibration.
        expected = Calibration.from_dict(default_model.manifest["calibration"]).probability(
            np.array([stored.raw_probability])
        )[0]
        assert abs(stored.probabilities[positive] - expected) < 1e-4
        assert stored.segments["cycles"] > 0 and stored.segments["s1_s"]
        assert "segmentation_ms" in stored.timings
        assert row["decision"] == stored.decision

        shown = api.get(f"/api/v1/recordings/{row['id']}/").json()["predictions"][0]

        assert shown["decision"] == stored.decision
        assert shown["decision_reasons"] == stored.decision_reasons
        assert shown["raw_probability"] == stored.raw_probability
        assert shown["segments"]["cycles"] == stored.segments["cycles"] > 0
        assert all(isinstance(onset, float) for onset in shown["segments"]["s1_s"])


def test_it_writes_the_decision_after_the_label_in_the_csv_report(
    shared_worker: Any, default_model: Any, api: Any
) -> None:
    created = upload(api, sample_archive(["a0035.wav", "d0001.wav"]), "two.zip")

    batch = wait_for_reports(wait_for_batch(created["id"]).pk)

    report = Report.objects.get(batch=batch, format="csv")
    table = list(csv.DictReader(io.StringIO(storage.read_bytes(report.storage_key).decode())))
    header = list(table[0])
    assert header[header.index("label") + 1] == "decision"
    decisions = dict(Prediction.objects.filter(batch=batch).values_list("recording__path", "decision"))
    assert {row["path"]: row["decision"] for row in table} == decisions
    assert all(decisions.values())


def test_it_leaves_a_batch_like_validation_without_a_shift_warning(
    shared_worker: Any, default_model: Any, api: Any
) -> None:
    first = wait_for_reports(wait_for_batch(upload(api, sample_archive(SHIFT_BATCH), "a.zip")["id"]).pk)
    assert first.shift_warning == ""  # the committed bundle has no reference to compare with
    scores = positive_scores(first)
    assert len(scores) >= 20
    median = sorted(scores)[len(scores) // 2]
    set_calibration(
        default_model, Calibration(threshold=median, reference_quantiles=reference_quantiles(scores))
    )

    second = upload(api, sample_archive(SHIFT_BATCH), "b.zip")

    batch = wait_for_reports(wait_for_batch(second["id"]).pk)
    assert batch.shift_warning == ""
    assert api.get(f"/api/v1/batches/{batch.pk}/").json()["shift_warning"] == ""
    summary = json.loads(storage.read_bytes(Report.objects.get(batch=batch, format="json").storage_key))
    assert summary["shift_warning"] is None


def test_it_warns_about_a_batch_whose_scores_are_unlike_validation(
    shared_worker: Any, default_model: Any, api: Any, member: Any
) -> None:
    # Validation scores all at zero: every real recording scores above them.
    set_calibration(default_model, Calibration(threshold=0.5, reference_quantiles=(0.0,) * 21))

    created = upload(api, sample_archive(SHIFT_BATCH), "shifted.zip")

    batch = wait_for_reports(wait_for_batch(created["id"]).pk)
    assert "KS distance" in batch.shift_warning
    assert api.get(f"/api/v1/batches/{batch.pk}/").json()["shift_warning"] == batch.shift_warning
    summary = json.loads(storage.read_bytes(Report.objects.get(batch=batch, format="json").storage_key))
    assert summary["shift_warning"] == batch.shift_warning
    page = Client()
    page.force_login(member)
    body = page.get(f"/batches/{batch.pk}/").content.decode()
    assert "data-shift-warning" in body and "KS distance" in body
