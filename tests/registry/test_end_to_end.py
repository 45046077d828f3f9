"""Registry and re-analysis with a real worker: smoke tests, beat-started re-analysis."""

import datetime as dt
from pathlib import Path
from typing import Any

from django.utils import timezone

from jobs.models import Batch, ModelVersion, Prediction, Recording
from jobs.services import reanalysis, registry
from ml.bundle import pack_bundle
from tests import factories
from tests.polling import poll_until
from tests.registry.conftest import api_as, copy_bundle, predict, recording_objects, store_samples
from workers import registry_tasks

WAIT_SECONDS = 90


def wait_until(check: Any, what: str) -> None:
    poll_until(check, WAIT_SECONDS, interval=0.3, message=f"still waiting for {what}")


def finished(batch: Batch) -> bool:
    batch.refresh_from_db()
    return batch.is_finished


def test_it_runs_a_scheduled_reanalysis_at_its_time_once_per_recording_without_copying_audio(
    celery_worker: Any, researcher: Any, north: Any, tmp_path: Path
) -> None:
    old = factories.ModelVersionFactory(is_default=True)
    new = registry.register_bundle(copy_bundle(tmp_path), make_default=False, smoke=False)
    recordings = store_samples(north, old, count=4)
    for recording in recordings:
        predict(recording, old, "normal")
    already = predict(recordings[0], new, "abnormal", abnormal=0.7, normal=0.3)
    objects_before, rows_before = recording_objects(), Recording.objects.count()

    run_at = timezone.now() + dt.timedelta(hours=1)
    response = api_as(researcher).post(
        "/api/v1/reanalyses/",
        {
            "batches": [str(recordings[0].batch_id)],
            "model": new.slug,
            "when": "at",
            "run_at": run_at.isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201
    batch = Batch.objects.get(pk=response.json()["batches"][0]["id"])
    assert registry_tasks.start_due_reanalyses() == []
    assert batch.status == Batch.Status.SCHEDULED

    Batch.objects.filter(pk=batch.pk).update(scheduled_for=timezone.now())  # its time has come
    assert registry_tasks.start_due_reanalyses() == [str(batch.pk)]
    wait_until(lambda: finished(batch), "the re-analysis to finish")

    assert batch.status == Batch.Status.COMPLETED, batch.error_message
    assert (batch.total_count, batch.done_count, batch.skipped_count, batch.failed_count) == (4, 3, 1, 0)
    per_recording = Prediction.objects.filter(model_version=new).values_list("recording_id", flat=True)
    assert sorted(per_recording) == sorted(recording.pk for recording in recordings)
    assert Prediction.objects.get(model_version=new, recording=recordings[0]).pk == already.pk
    assert Prediction.objects.filter(model_version=old).count() == 4
    assert recording_objects() == objects_before
    assert Recording.objects.count() == rows_before


def test_it_activates_an_uploaded_bundle_after_the_workers_smoke_test_and_runs_waiting_reanalyses(
    celery_worker: Any, researcher: Any, staff: Any, north: Any, tmp_path: Path
) -> None:
    current = registry.register_bundle(copy_bundle(tmp_path / "current"), make_default=True, smoke=False)
    recordings = store_samples(north, current, count=2)
    [waiting] = reanalysis.request_reanalysis(
        researcher, selection=reanalysis.Selection(batches=(recordings[0].batch_id,)), model_version=None,
        when=reanalysis.NEW_DEFAULT,
    )  # fmt: skip
    packed = tmp_path / "bundle.zip"
    with packed.open("wb") as sink:
        pack_bundle(copy_bundle(tmp_path / "next", version="99.0.0"), sink)

    with packed.open("rb") as upload:
        response = api_as(staff).post(
            "/api/v1/models/", {"bundle": upload, "default": "true"}, format="multipart"
        )
    assert response.status_code == 202
    assert response.json()["status"] == "checking" and response.json()["is_default"] is False
    version = ModelVersion.objects.get(pk=response.json()["id"])
    wait_until(lambda: ModelVersion.objects.filter(pk=version.pk, is_default=True).exists(), "the smoke test")
    wait_until(lambda: finished(waiting), "the waiting re-analysis")

    version.refresh_from_db()
    assert version.status == ModelVersion.Status.ACTIVE
    assert version.smoke_test["passed"] is True
    assert waiting.model_version_id == version.pk
    assert (waiting.status, waiting.done_count) == (Batch.Status.COMPLETED, 2)
    assert Prediction.objects.filter(model_version=version).count() == 2
